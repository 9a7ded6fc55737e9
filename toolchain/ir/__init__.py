"""The NIR program: a graph validated, flattened, ordered and typed for execution
(:mod:`spikeport.ir.checks` and :mod:`spikeport.ir.shapes` hold the validation), and the pure neuron step functions every
float target takes its arithmetic from."""

"""The NIR program: a graph flattened, ordered and typed for execution, and the pure
neuron step functions every float target takes its arithmetic from."""

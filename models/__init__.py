"""spikeport models: deployable snntorch architectures, neuron presets and recipes."""
from models.architectures import ARCHITECTURES, build_model
from models.network import Recording, SpikingSequential, record
from models.neurons import make_neuron

__all__ = ["ARCHITECTURES", "build_model", "Recording", "SpikingSequential", "record",
           "make_neuron"]

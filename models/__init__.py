"""spikeport models: deployable snntorch architectures, neuron presets and recipes."""
from spikeport.models.architectures import ARCHITECTURES, build_model
from spikeport.models.network import Recording, SpikingSequential, record
from spikeport.models.neurons import make_neuron

__all__ = ["ARCHITECTURES", "build_model", "Recording", "SpikingSequential", "record",
           "make_neuron"]

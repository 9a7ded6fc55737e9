"""spikeport models: deployable snntorch architectures, neuron presets and recipes."""
from spikeport.models.architectures import ARCHITECTURES, build_model
from spikeport.models.network import Recording, SpikingSequential, record
from spikeport.models.neurons import make_neuron
from spikeport.models import resnet as _resnet  # noqa: F401  (registers arch 'resnet')

__all__ = ["ARCHITECTURES", "build_model", "Recording", "SpikingSequential", "record",
           "make_neuron"]

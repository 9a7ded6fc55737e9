"""Sparsity / synaptic-operation / energy estimation from a target's Recording (ENERGY.md)."""

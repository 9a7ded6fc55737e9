"""The Loihi targets: quantisation to Loihi's CUBA fixed point, the netx writer/reader,
the bit-exact emulator (``loihi-emu``) and the Lava simulator (``lava``)."""

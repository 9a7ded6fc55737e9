"""Writers of the file formats tonic's dataset classes read, for the synthetic fixtures of
tests/test_tonic_datasets.py: N-MNIST / N-Caltech101 .bin, the Heidelberg datasets' .h5,
AEDAT 4 (CIFAR10-DVS). Each is written from the format's description, not from tonic."""
import struct
from pathlib import Path

import flatbuffers
import h5py
import numpy as np


def write_bin(path: Path, ev: dict) -> None:
    """N-MNIST's 40-bit events (garrickorchard.com/datasets/n-mnist): byte 0 x, byte 1 y,
    bit 7 of byte 2 the polarity, the other 23 bits the timestamp in us, big-endian."""
    t = ev["t"].astype(np.int64)
    raw = np.stack([ev["x"], ev["y"], (ev["p"] << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF,
                    t & 0xFF], axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def write_shd(path: Path, recordings: list[tuple[np.ndarray, np.ndarray]], labels) -> None:
    """The Heidelberg datasets' h5 layout (Cramer et al. 2020): spikes/times (s) and
    spikes/units as ragged arrays, labels, extra/keys and extra/speaker."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(recordings),),
                                 dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (len(recordings),),
                                 dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(recordings):
            times[i], units[i] = t, u
        f["labels"] = np.asarray(labels, np.uint16)
        f["extra/keys"] = np.array([b"zero", b"one"])
        f["extra/speaker"] = np.zeros(len(recordings), np.uint16)


AEDAT4_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
    '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
    '<attr key="compression" type="string">NONE</attr>'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
    '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
    '</node></node></node></dv>')


def write_aedat4(path: Path, ev: dict) -> None:
    """An uncompressed AEDAT 4 file with one event stream, as the aedat decoder reads it
    (aedat's flatbuffers/ioheader.fbs and events.fbs, src/aedat_core.rs): the magic line,
    the u32 length and flatbuffer of the IOHeader (compression None, an XML description of
    stream 0 of type EVTS), then one packet: u32 stream id, u32 length, a size-prefixed
    EventPacket flatbuffer (identifier EVTS) of structs {t: int64, x, y: int16, on: bool}."""
    b = flatbuffers.Builder(1024)
    description = b.CreateString(AEDAT4_DESCRIPTION)
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(2, description, 0)
    b.PrependInt32Slot(0, 0, 0)  # compression: None
    b.Finish(b.EndObject())
    header = bytes(b.Output())
    b = flatbuffers.Builder(1024)
    b.StartVector(16, len(ev["t"]), 8)
    for i in reversed(range(len(ev["t"]))):  # a struct is built back to front, 16 bytes
        b.Prep(8, 16)
        b.Pad(3)
        b.PrependBool(bool(ev["p"][i]))
        b.PrependInt16(int(ev["y"][i]))
        b.PrependInt16(int(ev["x"][i]))
        b.PrependInt64(int(ev["t"][i]))
    elements = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, elements, 0)
    b.FinishSizePrefixed(b.EndObject(), file_identifier=b"EVTS")
    packet = bytes(b.Output())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header
                     + struct.pack("<II", 0, len(packet)) + packet)

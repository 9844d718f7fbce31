#!/usr/bin/python3
"""Reads TensorBoard event files with Google's protobuf runtime (Debian: python3-protobuf) and message types declared
here from TensorFlow's event.proto and summary.proto (the fields TensorBoard reads), independently of the C++ writer
it checks. Verifies every record's framing (length, masked CRC32C of the length and of the data) and prints one JSON
object: {"files": N, "file_version": ..., "scalars": {tag: [[step, value], ...]}, "images": [[tag, step, width,
height, png_bytes]], "texts": [[tag, step, text]], "restarts": [step, ...]}.

    /usr/bin/python3 tests/read_tfevents.py RUN_FOLDER
"""
import glob
import json
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def message_types():
    fd = descriptor_pb2.FileDescriptorProto(name="tfevents_subset.proto", package="tb")

    def msg(name, fields):
        m = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = ".tb." + type_name
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("Image", [("height", 1, F.TYPE_INT32, opt, None), ("width", 2, F.TYPE_INT32, opt, None),
                  ("colorspace", 3, F.TYPE_INT32, opt, None), ("encoded_image_string", 4, F.TYPE_BYTES, opt, None)])
    msg("TensorShape", [])
    msg("Tensor", [("dtype", 1, F.TYPE_INT32, opt, None), ("tensor_shape", 2, F.TYPE_MESSAGE, opt, "TensorShape"),
                   ("string_val", 8, F.TYPE_BYTES, rep, None)])
    msg("PluginData", [("plugin_name", 1, F.TYPE_STRING, opt, None), ("content", 2, F.TYPE_BYTES, opt, None)])
    msg("SummaryMetadata", [("plugin_data", 1, F.TYPE_MESSAGE, opt, "PluginData")])
    msg("Value", [("tag", 1, F.TYPE_STRING, opt, None), ("simple_value", 2, F.TYPE_FLOAT, opt, None),
                  ("image", 4, F.TYPE_MESSAGE, opt, "Image"), ("tensor", 8, F.TYPE_MESSAGE, opt, "Tensor"),
                  ("metadata", 9, F.TYPE_MESSAGE, opt, "SummaryMetadata")])
    msg("Summary", [("value", 1, F.TYPE_MESSAGE, rep, "Value")])
    msg("SessionLog", [("status", 1, F.TYPE_INT32, opt, None)])
    # event.proto: file_version 3, summary 5, log_message 6 (deprecated), session_log 7.
    msg("Event", [("wall_time", 1, F.TYPE_DOUBLE, opt, None), ("step", 2, F.TYPE_INT64, opt, None),
                  ("file_version", 3, F.TYPE_STRING, opt, None), ("summary", 5, F.TYPE_MESSAGE, opt, "Summary"),
                  ("session_log", 7, F.TYPE_MESSAGE, opt, "SessionLog")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    desc = pool.FindMessageTypeByName("tb.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def assert_known(msg, where):
    """Every field of `msg` and of the messages in it is one the definitions above declare (a wrong field number in
    the writer would parse as an unknown field and be missed silently)."""
    assert len(msg.UnknownFields()) == 0, f"{where}: unknown field numbers {[f.field_number for f in msg.UnknownFields()]}"
    for field, value in msg.ListFields():
        if field.type == F.TYPE_MESSAGE:
            for m in (value if field.label == F.LABEL_REPEATED else [value]):
                assert_known(m, f"{where}.{field.name}")


def main():
    Event = message_types()
    out = {"files": 0, "file_version": None, "scalars": {}, "images": [], "texts": [], "restarts": []}
    for path in sorted(glob.glob(sys.argv[1] + "/events.out.tfevents.*")):
        out["files"] += 1
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,) = struct.unpack("<Q", header)
            (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
            assert len_crc == masked(header), f"{path}@{pos}: bad length CRC"
            body = data[pos + 12:pos + 12 + length]
            (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
            assert len(body) == length and body_crc == masked(body), f"{path}@{pos}: bad data CRC"
            pos += 16 + length
            ev = Event()
            ev.ParseFromString(body)
            assert_known(ev, f"{path}@{pos}")
            if ev.file_version:
                out["file_version"] = ev.file_version
            if ev.HasField("session_log") and ev.session_log.status == 1:
                out["restarts"].append(ev.step)
            for v in ev.summary.value:
                if v.HasField("image"):
                    png = v.image.encoded_image_string
                    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"{v.tag}: not a PNG"
                    w, h = struct.unpack(">II", png[16:24])
                    assert (w, h) == (v.image.width, v.image.height), f"{v.tag}: PNG size differs from the summary's"
                    out["images"].append([v.tag, ev.step, w, h, len(png)])
                elif v.HasField("tensor"):
                    assert v.metadata.plugin_data.plugin_name == "text"
                    out["texts"].append([v.tag, ev.step, v.tensor.string_val[0].decode()])
                else:
                    out["scalars"].setdefault(v.tag, []).append([ev.step, v.simple_value])
    print(json.dumps(out))


if __name__ == "__main__":
    main()

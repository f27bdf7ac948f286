#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<target>/seed-*: valid inputs and a few near
misses per parser. Run from anywhere; reads the repository's models/ and, when built, build/fixtures/
(Broden rows, masks, a JPEG) and /tmp/fuzzseed/conv1.dec.pt (a real decoder file, see README.md).
Only seed-* files are rewritten; the inputs libFuzzer merged in (named by their SHA-1) stay."""
import json
import os
import struct
import sys
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
FIXTURES = os.path.join(ROOT, "build", "fixtures")


def seed(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def png(width, height, color_type, rows, bit_depth=8, extra=b""):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    raw = b"".join(b"\0" + row for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def npy(descr, shape, data, version=1, fortran=False):
    shape_text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    prefix = 10 if version == 1 else 12
    header += " " * ((64 - (prefix + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + data


# units: --units and comma lists
for i, text in enumerate(["42", "0-63", "1,5,9-12", "all", " 3 - 7 ", "1,,2", "7-3", "conv1,conv2,,conv5"]):
    seed("units", str(i), text)

# objective: expressions (dir() files d.txt, bad.txt, empty.txt exist in the harness's folder)
for i, text in enumerate([
        "conv5:3 + 0.5*conv4:7@2,3 - 0.05*tv", "conv5:42", "-tv + l2 - 0.05*alpha", "class:3",
        "dir(conv5, d.txt)", "dir(conv5,bad.txt)", "features.10:0 + layer4.1.conv2:511@0,0",
        "1e-3*relu#1:2 - .5*class:0", "2*conv1:0@3,4 + 0.25*dir(conv1, empty.txt)"]):
    seed("objective", str(i), text)

# input_spec: sidecars (labels.txt exists beside the harness's model.json)
seed("input_spec", "tinycnn.json", read(os.path.join(ROOT, "models", "tinycnn.json")))
for name in ["alexnet_script.json", "bad_sidecar.json"]:
    if os.path.exists(os.path.join(FIXTURES, name)):
        seed("input_spec", name, read(os.path.join(FIXTURES, name)))
seed("input_spec", "empty-object", "{}")
seed("input_spec", "grey", json.dumps({"input": {"size": [32], "channels": 1, "mean": [0.5], "std": [0.25],
                                                 "range": [0, 255], "channel_order": "BGR"},
                                       "labels": ["a", "b"], "aliases": {"c1": "features.0"}}))
seed("input_spec", "labels-file", json.dumps({"labels": "labels.txt", "architecture": "x"}))

# npy: arrays of every dtype the reader takes, versions 1-3, and a few it refuses
seed("npy", "f4-2x3", npy("<f4", (2, 3), struct.pack("<6f", *range(6))))
seed("npy", "i8-4", npy("<i8", (4,), struct.pack("<4q", 1, -2, 3, 4)))
seed("npy", "u1-scalar", npy("|u1", (), b"\x07"))
seed("npy", "b1-2x0", npy("|b1", (2, 0), b""))
seed("npy", "f2-v2", npy("<f2", (2,), b"\x00\x3c\x00\x40", version=2))
seed("npy", "f8-v3", npy("<f8", (1, 1), struct.pack("<d", 0.5), version=3))
seed("npy", "i2-fortran", npy("<i2", (2, 1), b"\1\0\2\0", fortran=True))
seed("npy", "f4-bigendian", npy(">f4", (1,), b"\0\0\0\0"))

# decode: PNGs of each colour type, and the fixtures' JPEG and label PNG
seed("decode", "rgb.png", png(4, 4, 2, [bytes([2, 0, 0, 3, 0, 0, 0, 0, 0, 5, 0, 0])] * 4))
seed("decode", "grey.png", png(4, 4, 0, [bytes([1, 2, 3, 0])] * 4))
seed("decode", "rgba.png", png(2, 2, 6, [bytes([1, 2, 3, 255, 4, 5, 6, 0])] * 2))
seed("decode", "palette.png", png(2, 2, 3, [bytes([0, 1])] * 2,
                                 extra=struct.pack(">I", 6) + b"PLTE" + bytes([9, 8, 7, 1, 2, 3]) +
                                 struct.pack(">I", zlib.crc32(b"PLTE" + bytes([9, 8, 7, 1, 2, 3])))))
seed("decode", "grey16.png", png(2, 1, 0, [bytes([1, 0, 255, 255])], bit_depth=16))
synth = os.path.join(FIXTURES, "concepts", "images", "synth")
if os.path.isdir(synth):
    seed("decode", "concepts.jpg", read(os.path.join(synth, "000001.jpg")))
    seed("decode", "concepts_color.png", read(os.path.join(synth, "000001_color.png")))

# broden: options byte, then label.csv NUL index.csv NUL category.csv NUL "NAME\n"c_NAME.csv ...
# (masks: the harness's images/m.png, an RGB 4x4, and images/g.png, a grey 4x4)
label_csv = ("number,name,category,frequency,coverage,syns\n"
             "1,chequered,texture(27);scene(20),47,47.000000,checkered\n"
             "2,cyan-c,color(34),34,6.408854,\n3,green-c,color(32),32,7.402778,\n"
             "5,striped,texture(29),29,29.0,\n11,square,object(22),22,3.99,\n12,plain,scene(21),21,21.0,\n")
index_csv = ("image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
             "m.png,train,4,4,4,4,m.png,m.png;g.png,,,12,5;1\n"
             "g.png,val,4,4,4,4,g.png,,,,12,\n"
             "missing.jpg,train,96,96,48,48,,m.png,,,,5\n")
category_csv = "name,first,last,count,frequency\ntexture,1,14,3,76\nscene,1,20,4,60\ncolor,2,18,10,262\nobject,11,17,4,80\n"
coverage = {"color": "code,number,name,frequency,coverage\n1,2,cyan-c,34,6.408854\n2,3,green-c,32,7.402778\n",
            "texture": "code,number,name,frequency,coverage\n1,5,striped,29,29.000000\n2,1,chequered,27,27.000000\n",
            "scene": "code,number,name,frequency,coverage\n1,12,plain,21,21.000000\n2,1,chequered,20,20.000000\n",
            "object": "code,number,name,frequency,coverage\n1,11,square,22,3.990451\n"}
c_parts = "".join("\0" + name + "\n" + text for name, text in coverage.items())
seed("broden", "full", b"\0" + ("\0".join([label_csv, index_csv, category_csv]) + c_parts).encode())
seed("broden", "no-coverage-files", b"\0" + "\0".join([label_csv, index_csv, category_csv]).encode())
seed("broden", "no-category-csv-val", b"\2" + "\0".join([label_csv, index_csv]).encode())
seed("broden", "ndl-max2", b"\x0c" + "\0".join([label_csv, index_csv, category_csv]).encode())
concepts = os.path.join(FIXTURES, "concepts")
if os.path.isdir(concepts):  # the fixture's own files, first rows (masks absent here: InputError on load)
    rows = lambda name, n: "".join(open(os.path.join(concepts, name)).readlines()[:n])
    seed("broden", "concepts", b"\0" + "\0".join([rows("label.csv", 30), rows("index.csv", 4), rows("category.csv", 9)]).encode())

# upconv_decoder: mode byte (even: the file as is; odd: metadata JSON wrapped by the harness)
meta = {"batch": 4, "channels": 1, "dataset": "build/fixtures/concepts", "epochs_done": 1,
        "feature_shape": [16, 96, 96], "format": "cnnviz-decoder-1", "height": 96, "layer": "conv1",
        "layer_alias": "conv1", "learning_rate": 0.001, "mean_image_val_loss": 0.076,
        "model_fingerprint": "1a6ecd0be4bdeee6", "model_path": "models/tinycnn.pt", "seed": 0, "train_images": 7,
        "train_loss": [0.27], "train_seconds": 0.36, "upsamplings": 0, "val_images": 1, "val_loss": [0.27],
        "width": 96}
seed("upconv_decoder", "meta-conv1", b"\1" + json.dumps(meta).encode())
seed("upconv_decoder", "meta-fc", b"\1" + json.dumps(dict(meta, feature_shape=[10], upsamplings=2, height=16, width=16)).encode())
seed("upconv_decoder", "meta-other-format", b"\1" + json.dumps({"format": "other"}).encode())
if os.path.exists("/tmp/fuzzseed/conv1.dec.pt"):
    seed("upconv_decoder", "conv1.dec.pt", b"\0" + read("/tmp/fuzzseed/conv1.dec.pt"))
seed("upconv_decoder", "not-a-zip", b"\0PK\3\4 not really")

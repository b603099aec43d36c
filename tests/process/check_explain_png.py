"""Checks a `logpctl models explain --output` PNG without libpng: the signature, the size for
an H x W image at scale S ((2W + 1) S x H S, RGB), the record on the left (binary: 0 or 255 grey)
and the heat map on the right, whose brightest pixel must be where the lowest term is.

Usage: check_explain_png.py PNG EXPLAIN_JSON RECORDS_CSV_ROW H W
(EXPLAIN_JSON: what `logpctl --json models explain` printed; RECORDS_CSV_ROW: the record's values,
comma separated, 0/1.)"""
import json
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour = ihdr[:4]
    assert depth == 8 and colour == 2, f"expected 8-bit RGB, got depth {depth} colour {colour}"
    raw = zlib.decompress(idat)
    bpp, stride = 3, width * 3
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
            else:
                assert f == 0, f"bad filter {f}"
        rows.append(line)
        prev = line
    return width, height, rows


def main():
    png, explain, record, h, w = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    width, height, rows = read_png(png)
    scale = height // h
    assert scale >= 1 and height == h * scale, (height, h)
    assert width == (2 * w + 1) * scale, f"width {width} for {w} columns at scale {scale}"
    terms = json.loads(open(explain).read())["dimensionLogProb"]
    values = [float(v) for v in record.split(",")]
    assert len(terms) == h * w == len(values)
    pixel = lambda x0, y, x: rows[y * scale + scale // 2][(x0 + x * scale + scale // 2) * 3:][:3]
    for y in range(h):
        for x in range(w):
            grey = pixel(0, y, x)
            want = 255 if values[y * w + x] > 0 else 0
            assert list(grey) == [want] * 3, f"record pixel ({y}, {x}) is {list(grey)}, want {want}"
    bright = [sum(pixel((w + 1) * scale, y, x)) for y in range(h) for x in range(w)]
    lowest = min(range(len(terms)), key=lambda d: terms[d])
    assert bright[lowest] == max(bright) == 765, (
        f"lowest term at dim {lowest} has brightness {bright[lowest]}, max {max(bright)}")
    faintest = max(range(len(terms)), key=lambda d: terms[d])
    assert bright[faintest] == 0, f"highest term at dim {faintest} has brightness {bright[faintest]}"
    print(f"png ok: {width}x{height}, scale {scale}, hottest pixel (row {lowest // w}, col {lowest % w})")


main()

"Schemathesis hooks: an upload (`format: binary`, `minLength: 1`) is an image of an accepted format, whole or damaged, or any non-empty bytes."
import io
import numpy as np, schemathesis
from hypothesis import strategies as st
from PIL import Image

MODES = {'PNG': ['1', 'L', 'LA', 'P', 'RGB', 'RGBA', 'I;16'], 'JPEG': ['L', 'RGB', 'CMYK'],
         'BMP': ['1', 'L', 'P', 'RGB'], 'GIF': ['L', 'P'], 'WEBP': ['RGB', 'RGBA'],
         'TIFF': ['1', 'L', 'RGB', 'CMYK', 'I;16', 'F']}
EXIF = ('JPEG', 'PNG', 'WEBP', 'TIFF')

@st.composite
def images(draw) -> bytes:
    "A small image of a format the service accepts, in one of that format's modes, sometimes with an EXIF orientation."
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    h, w, seed = draw(st.integers(1, 48)), draw(st.integers(1, 48)), draw(st.integers(0, 2**16))
    im = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    im = im.convert('L').convert(mode) if mode in ('I;16', 'F') else im.convert(mode)
    exif = Image.Exif()
    if fmt in EXIF and draw(st.booleans()): exif[0x0112] = draw(st.integers(0, 9))   # orientation; 1-8 are valid
    b = io.BytesIO()
    im.save(b, fmt, exif=exif)
    return b.getvalue()

@st.composite
def damaged(draw) -> bytes:
    "An image cut short (never to nothing: an empty upload is invalid by the schema), or with one byte changed."
    data = draw(images())
    i = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()): return data[:max(i, 1)]
    return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]

schemathesis.openapi.format('binary', st.one_of(images(), damaged(), st.binary(min_size=1, max_size=64)))   # minLength: 1

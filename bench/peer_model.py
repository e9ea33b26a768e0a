"""The bundle's ONNX model and preprocessing without opsbook, shared by the peer servers of bench/serve.py.

The same `model.onnx`, the same input spec (convert to mode, squish-resize bilinear to size, /255, normalise) as
`opsbook.features.preprocess`, and the same thread settings as opsbook-serve (cores / workers intra-op threads, no spinning).
"""
import json, os
from pathlib import Path
import numpy as np, onnxruntime as ort
from PIL import Image

def open_model(bundle:str|None=None, threads:int=1) -> tuple[ort.InferenceSession, dict, list[str]]:
    "ONNX Runtime session, input spec and classes of the bundle at `bundle` (default: $OPSBOOK_BUNDLE)."
    path = Path(bundle or os.environ['OPSBOOK_BUNDLE'])
    card = json.loads((path/'bundle.json').read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(str(path/'model.onnx'), so, providers=['CPUExecutionProvider']), card['input'], card['classes']

def preprocess(imgs:list[Image.Image], spec:dict) -> np.ndarray:
    "A float32 N×C×H×W batch, as the bundle's input spec says."
    mode, sz, c = ('L' if spec['channels'] == 1 else 'RGB'), spec['size'], spec['channels']
    x = np.stack([np.asarray(im.convert(mode).resize((sz, sz), Image.BILINEAR), dtype=np.float32) for im in imgs]).reshape(len(imgs), sz, sz, c) / 255
    return ((x - np.array(spec['mean'], np.float32)) / np.array(spec['std'], np.float32)).transpose(0, 3, 1, 2).astype(np.float32)

def answers(logits:np.ndarray, classes:list[str]) -> list[dict]:
    "Label and softmax confidence of each row of `logits`."
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return [dict(label=classes[i], confidence=float(r[i])) for r, i in zip(p, p.argmax(1))]

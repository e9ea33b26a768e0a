"""The usual approach, as the peer to beat: a FastAPI endpoint running the eager PyTorch model once per request.

Bench only. `OPSBOOK_BUNDLE=DIR uvicorn bench.eager_server:app`
"""
import io, os
import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from opsbook.bundle import load_bundle
from opsbook.features import preprocess
from opsbook.train import bundle_model

bundle = load_bundle(os.environ['OPSBOOK_BUNDLE'])
model = bundle_model(bundle)
app = FastAPI()

@app.post('/predict')
def predict(file:UploadFile=File(...)):
    img = Image.open(io.BytesIO(file.file.read()))
    with torch.no_grad(): p = model(torch.from_numpy(preprocess([img], bundle.spec))).softmax(1)[0]
    i = int(p.argmax())
    return {'label': bundle.classes[i], 'confidence': float(p[i])}

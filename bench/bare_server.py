"""The floor: a bare FastAPI + ONNX Runtime endpoint, one image per model call, run on the event loop; no batching, log,
metrics or validation. Bench only: started by bench/serve.py as
`OPSBOOK_BUNDLE=DIR uvicorn bare_server:app --workers 2` from bench/.
"""
import io
from fastapi import FastAPI, UploadFile
from PIL import Image
from peer_model import open_model, preprocess, answers

sess, spec, classes = open_model()
app = FastAPI()

@app.post('/predict')
async def predict(file:UploadFile):
    x = preprocess([Image.open(io.BytesIO(await file.read()))], spec)
    return answers(sess.run(['logits'], {'image': x})[0], classes)[0]

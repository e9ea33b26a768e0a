"""BentoML serving the bundle's ONNX model with its adaptive batching (batches of up to 32; metrics on as by default,
access log off). Bench only: runs in the peers' virtualenv (bench/peers.txt), started by bench/serve.py as
`OPSBOOK_BUNDLE=DIR BENCH_WORKERS=2 bentoml serve bentoml_server:Classifier --port PORT` from bench/.
"""
import os
import bentoml
from PIL import Image
from peer_model import open_model, preprocess, answers

@bentoml.service(workers=int(os.environ.get('BENCH_WORKERS', 1)), logging={'access': {'enabled': False}})
class Classifier:
    def __init__(self):
        self.sess, self.spec, self.classes = open_model()

    @bentoml.api(batchable=True, max_batch_size=32)
    def predict(self, file:list[Image.Image]) -> list[dict]:
        return answers(self.sess.run(['logits'], {'image': preprocess(file, self.spec)})[0], self.classes)

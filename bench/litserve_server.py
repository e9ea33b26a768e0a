"""LitServe serving the bundle's ONNX model with its dynamic batching (batches of up to 32, gathered for at most 5 ms;
0 ms makes its workers spin on their queues). Bench only: runs in the peers' virtualenv (bench/peers.txt), started by
bench/serve.py as `OPSBOOK_BUNDLE=DIR python litserve_server.py PORT WORKERS` from bench/.
"""
import io, sys
import litserve as ls
from PIL import Image
from peer_model import open_model, preprocess, answers

class Classifier(ls.LitAPI):
    def setup(self, device):
        self.sess, self.spec, self.classes = open_model()

    def decode_request(self, request):
        return Image.open(io.BytesIO(request['file'].file.read()))

    def predict(self, imgs):
        return answers(self.sess.run(['logits'], {'image': preprocess(imgs, self.spec)})[0], self.classes)

    def encode_response(self, output): return output

if __name__ == '__main__':
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    api = Classifier(max_batch_size=32, batch_timeout=0.005)
    ls.LitServer(api, accelerator='cpu', workers_per_device=workers).run(host='127.0.0.1', port=port, log_level='warning', generate_client_file=False)

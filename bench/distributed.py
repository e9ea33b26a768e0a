"""Data-parallel training on CPU: one process against two on the digits, with the same parameters and epochs.

Run from the repository root: `python bench/distributed.py [--epochs 10] [--rounds 3]`. For each setup (one
process with PyTorch's default threads, one process with one thread, two processes with one thread each) it
times the training loop in this process (fastai's fit on rank 0, after the other rank has started: rounds
interleaved, medians reported) and the whole papermill run once. Prints a table, writes bench/distributed.json
and appends a dated section to bench/RESULTS.md.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import torch
from fastai.vision.all import Callback
from opsbook.data import digits_folder, scan_folder, split_dl
from opsbook.learner import local_ranks
from opsbook.train import TrainConfig, run_dls, run_learner, run_fit, train_worker
from opsbook.bundle import load_bundle, library_versions

ROOT = Path(__file__).resolve().parent.parent
SETUPS = [('1 process, default threads', 1, None), ('1 process, 1 thread', 1, 1), ('2 processes, 1 thread each', 2, None)]

class Timer(Callback):
    "Seconds of each epoch's training phase and of each whole epoch (training and validation)."
    def before_fit(self): self.train, self.epoch = [], []
    def before_epoch(self): self.t_epoch = time.perf_counter()
    def before_train(self): self.t_train = time.perf_counter()
    def after_train(self): self.train.append(time.perf_counter() - self.t_train)
    def after_epoch(self): self.epoch.append(time.perf_counter() - self.t_epoch)

def fit_once(cfg:TrainConfig, threads:int|None, out:Path) -> dict:
    "Train as the notebook does, timing rank 0's loop; the test accuracy of the result."
    scan, saved = scan_folder(digits_folder(), seed=cfg.seed), torch.get_num_threads()
    if threads: torch.set_num_threads(threads)
    try:
        dls = run_dls(cfg, scan)
        learn, timer = run_learner(cfg, dls), Timer()
        t = time.perf_counter()
        with local_ranks(cfg.nproc, train_worker, cfg, digits_folder(), out):
            run_fit(cfg, learn, out/'checkpoint', cbs=[timer])
        fit_s = time.perf_counter() - t
        test_acc = float(learn.validate(dl=split_dl(dls, 'test'))[1])
    finally: torch.set_num_threads(saved)
    n_train = len(scan.split('train'))
    return dict(train_s=sum(timer.train), epochs_s=sum(timer.epoch), fit_s=fit_s, test_accuracy=test_acc,
                images_per_s=n_train * cfg.epochs / sum(timer.train))

def papermill_once(cfg:TrainConfig, threads:int|None, out:Path) -> dict:
    "The whole papermill run: wall time, and what its card says."
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    if threads: env['OMP_NUM_THREADS'] = str(threads)
    args = [a for k, v in dict(epochs=cfg.epochs, nproc=cfg.nproc, seed=cfg.seed, wandb_mode='disabled', out_dir=out,
                               run_name='bench').items() for a in ('-p', k, str(v))]
    out.mkdir(parents=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'papermill', 'nbs/train.ipynb', str(out/'report.ipynb'), *args, '--no-progress-bar'],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    card = load_bundle(out/'bundle').card
    return dict(wall_s=time.perf_counter() - t, card_train_s=card.metrics['train_time_s'],
                card_test_accuracy=card.metrics['test_accuracy'])

def cpu_model() -> str:
    "The processor's model name, as Linux reports it."
    info = Path('/proc/cpuinfo')
    names = [l.split(':', 1)[1].strip() for l in info.read_text().splitlines() if l.startswith('model name')] if info.exists() else []
    return names[0] if names else platform.processor() or platform.machine()

def table(rows:list[dict]) -> str:
    base = rows[0]['images_per_s']
    lines = ['| setup | train images/s | vs 1 process | training s | epochs s (train + valid) | fit s (with start-up) '
             '| papermill wall s | test acc. (fit) | test acc. (papermill) |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    lines += [f"| {r['setup']} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f}× | {r['train_s']:.1f} | "
              f"{r['epochs_s']:.1f} | {r['fit_s']:.1f} | {r['wall_s']:.1f} | {r['test_accuracy']*100:.2f}% | "
              f"{r['card_test_accuracy']*100:.2f}% |" for r in rows]
    return '\n'.join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--rounds', type=int, default=3)
    args = p.parse_args()
    load = [os.getloadavg()[0]]
    rounds = {name: [] for name, *_ in SETUPS}
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.rounds):
            for name, nproc, threads in SETUPS:
                cfg = TrainConfig.check(epochs=args.epochs, nproc=nproc, resume=False)
                rounds[name].append(fit_once(cfg, threads, Path(d)/f'fit-{i}-{nproc}-{threads}'))
                print(name, {k: round(v, 3) for k, v in rounds[name][-1].items()}, flush=True)
        load.append(os.getloadavg()[0])
        rows = []
        for name, nproc, threads in SETUPS:
            med = {k: statistics.median(r[k] for r in rounds[name]) for k in rounds[name][0]}
            cfg = TrainConfig.check(epochs=args.epochs, nproc=nproc)
            rows.append(dict(setup=name, **med, **papermill_once(cfg, threads, Path(d)/f'pm-{nproc}-{threads}')))
    load.append(os.getloadavg()[0])
    print(table(rows))
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
                machine=f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
                load_average=load, epochs=args.epochs, rounds=args.rounds, libraries=library_versions())
    (ROOT/'bench'/'distributed.json').write_text(json.dumps(dict(**meta, rows=rows, all_rounds=rounds), indent=2))
    with open(ROOT/'bench'/'RESULTS.md', 'a') as f:
        f.write(f"\n## Data-parallel training on CPU — `python bench/distributed.py`\n\n{meta['date'][:10]}, {meta['machine']}, "
                f"load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end. Digits, digitnet, {args.epochs} epochs, "
                f"24 px, bs 64 in all (32 per process with two), seed 42; fit timings are medians of {args.rounds} "
                f"interleaved rounds, the papermill run is one. JSON: `bench/distributed.json`.\n\n{table(rows)}\n")

if __name__ == '__main__': main()

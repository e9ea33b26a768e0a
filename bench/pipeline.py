"""The DVC pipeline's cost: `dvc repro` of the train stage against the bare papermill run it wraps, and a 4-point
queued sweep with `-j 2` against the same 4 points one at a time.

Run from the repository root: `python bench/pipeline.py [--rounds 1] [--sweep-epochs 5]`. Everything runs in a
temporary copy of the repository (git-initialised, its data stage run once). The overhead rows use the default
parameters of params.yaml, interleaved per round: papermill with `-f params.yaml`, then `dvc repro --force
--single-item train` (the same run, plus DVC's hashing, caching and lock). The sweep queues 4 learning rates with
`--sweep-epochs` epochs (1 pruning epoch, short runs not gated; `--force`, so that DVC's run cache cannot
replay the first sweep in the second) and runs the queue with `-j 1`, then again with `-j 2`, each worker
with one thread. Prints a table, writes bench/pipeline.json and appends a dated section to bench/RESULTS.md.
"""
import argparse, io, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import pandas as pd, yaml

ROOT = Path(__file__).resolve().parent.parent
LRS = ('0.003', '0.01', '0.02', '0.05')

def sh(repo:Path, *cmd:str, **env) -> float:
    "Seconds `cmd` took in `repo`; raise with its output if it failed."
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != 'IN_TEST'} | env)
    if r.returncode: raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t

def clone(dst:Path) -> Path:
    "A git-initialised copy of the repository's tracked and unignored files, its data stage run."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True).stdout
    for f in files.splitlines():
        if (ROOT/f).is_file(): (dst/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, dst/f)
    for cmd in (['git', 'init', '-q'], ['git', 'add', '-A'], ['git', '-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-qm', 'b']):
        sh(dst, *cmd)
    sh(dst, 'dvc', 'repro', 'data')
    return dst

def overhead(repo:Path, rounds:int) -> dict:
    "Median seconds of the bare papermill run and of `dvc repro` of the train stage, same parameters."
    bare, dvc = [], []
    (repo/'runs').mkdir(exist_ok=True)                     # papermill does not create its output's folder
    for _ in range(rounds):
        bare.append(sh(repo, 'papermill', 'nbs/train.ipynb', 'runs/bare.ipynb', '-f', 'params.yaml', '-p', 'out_dir', 'runs/bare',
                       '--no-progress-bar'))
        dvc.append(sh(repo, 'dvc', 'repro', '--force', '--single-item', 'train'))
    return dict(papermill_s=statistics.median(bare), dvc_repro_s=statistics.median(dvc), rounds=rounds)

def sweep(repo:Path, jobs:int, epochs:int) -> float:
    "Seconds for the queue of 4 learning rates to run with `jobs` workers of one thread each."
    for lr in LRS: sh(repo, 'dvc', 'exp', 'run', '--queue', '--force', '-S', f'lr={lr}', '-S', f'epochs={epochs}', '-S', 'optimize.epochs=1', '-S', 'optimize.tolerance=1',
                      '-S', 'gate_margin=-1')
    t = time.perf_counter()
    sh(repo, 'dvc', 'queue', 'start', '-j', str(jobs), OMP_NUM_THREADS='1')
    while True:
        status = subprocess.run(['dvc', 'queue', 'status'], cwd=repo, capture_output=True, text=True).stdout
        if not any(s in status for s in ('Queued', 'Running')): break
        time.sleep(1)
    took = time.perf_counter() - t
    if status.count('Success') != len(LRS): raise RuntimeError(f"the sweep failed:\n{status}")
    sh(repo, 'dvc', 'queue', 'remove', '--all')
    return took

COLUMNS = {'lr': 'lr', 'epochs': 'epochs', 'metrics/evaluate.json:accuracy': 'test accuracy', 'metrics/evaluate.json:ece': 'ECE',
           'metrics/quantize.json:accuracy': 'int8 accuracy', 'metrics/prune.json:accuracy': 'pruned accuracy (1 epoch)'}

def exp_table(repo:Path) -> str:
    "The sweep's experiments, one row each, as `dvc exp show` reports them: parameters and test metrics."
    show = pd.read_csv(io.StringIO(subprocess.run(['dvc', 'exp', 'show', '--csv'], cwd=repo, capture_output=True, text=True).stdout))
    exps = show[show.Experiment.notna()].drop_duplicates('lr').sort_values('lr')
    return exps.set_index('Experiment')[list(COLUMNS)].rename(columns=COLUMNS).round(4).to_markdown()

def main(rounds:int, epochs:int):
    with tempfile.TemporaryDirectory() as d:
        repo = clone(Path(d)/'opsbook')
        over = overhead(repo, rounds)
        seq = sweep(repo, 1, epochs)
        par = sweep(repo, 2, epochs)
        table = exp_table(repo)
    res = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f'{platform.machine()}, {os.cpu_count()} cores',
               params=yaml.safe_load((ROOT/'params.yaml').read_text()), **over,
               overhead=over['dvc_repro_s'] / over['papermill_s'] - 1, sweep_epochs=epochs, sweep_points=len(LRS),
               sweep_j1_s=seq, sweep_j2_s=par, sweep_speedup=seq / par, exp_show=table)
    rows = [('papermill nbs/train.ipynb -f params.yaml', f"{over['papermill_s']:.1f}"),
            ('dvc repro --force --single-item train', f"{over['dvc_repro_s']:.1f}"),
            ('DVC overhead', f"{res['overhead']:+.1%}"),
            (f'4-point queued sweep ({epochs} epochs), -j 1', f'{seq:.1f}'),
            (f'4-point queued sweep ({epochs} epochs), -j 2', f'{par:.1f}'),
            ('-j 2 speed-up', f"{res['sweep_speedup']:.2f}x")]
    md = '\n'.join(['| what | seconds |', '|---|---|', *[f'| {a} | {b} |' for a, b in rows]])
    print(md); print(table)
    (ROOT/'bench'/'pipeline.json').write_text(json.dumps(res, indent=2))
    with open(ROOT/'bench'/'RESULTS.md', 'a') as f:
        f.write(f"\n## Pipeline: DVC overhead and a queued sweep ({res['date'][:10]}, {res['machine']}, `bench/pipeline.py`)\n\n"
                f"{md}\n\nThe sweep's points (`dvc exp show`, one row per learning rate):\n\n{table}\n")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('--sweep-epochs', type=int, default=5)
    a = p.parse_args()
    main(a.rounds, a.sweep_epochs)

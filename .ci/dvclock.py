"""dvc.lock records which code and parameters made the committed metrics: exit 1, naming them, when a dependency that git
tracks, a parameter or a stage's command differs from it. Outputs are not compared: a fresh clone has none (they live
in the DVC remote). After a change, refresh the record with `dvc repro` and commit dvc.lock and metrics/."""
import json, subprocess, sys

def run(*args:str) -> str: return subprocess.run(args, capture_output=True, text=True, check=True).stdout

tracked = set(run('git', 'ls-files').splitlines())
stale = []
for stage, changes in json.loads(run('dvc', 'status', '--json') or '{}').items():
    for change in changes:
        if isinstance(change, str): stale.append(f"{stage}: {change}"); continue   # 'changed command', 'always changed'
        for path, how in change.get('changed deps', {}).items():
            if isinstance(how, dict): stale += [f"{stage}: parameter {k} in {path} {v}" for k, v in how.items()]
            elif path in tracked: stale.append(f"{stage}: {path} {how}")
if stale: sys.exit("dvc.lock does not match this commit:\n" + '\n'.join(f"- {s}" for s in stale) +
                   "\nrun `dvc repro` (it retrains what changed) and commit dvc.lock and metrics/ with the change")
print("dvc.lock matches the commit: its dependencies and parameters")

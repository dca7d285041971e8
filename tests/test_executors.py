"""Executors (`cat_nb.executors`): the local path in the default suite; a real one-node SLURM (slurmctld + slurmd + munged started
here, stopped by PID) in the slow ones (`make test-cluster`), and a multi-GPU job's torchrun path on CPU processes."""
import contextlib, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path

def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def install_slurm() -> str | None:
    "Installs Debian's slurm-wlm and munge when slurmctld is absent (root only); None when present, else what it did or why not."
    if shutil.which('slurmctld') and shutil.which('munged'): return None
    if os.geteuid() != 0 or not shutil.which('apt-get'): return 'slurmctld/munged absent and not root with apt-get'
    t0 = time.time(); env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    r = subprocess.run(['apt-get', 'install', '-y', '-q', 'slurm-wlm', 'munge'], env=env, capture_output=True, text=True)
    if r.returncode:
        subprocess.run(['apt-get', 'update', '-q'], env=env, capture_output=True)
        r = subprocess.run(['apt-get', 'install', '-y', '-q', 'slurm-wlm', 'munge'], env=env, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'apt-get install slurm-wlm munge failed: {r.stderr[-2000:]}')
    return f'installed slurm-wlm and munge in {time.time() - t0:.0f}s'

@contextlib.contextmanager
def one_node_slurm(cpus: int = 2, mem_mb: int = 2000, nice: int = 15):
    """A one-node SLURM on this machine (own munged, slurmctld, slurmd, config and state in a temp folder, niced); yields the
    environment the clients need (SLURM_CONF). Every daemon it started is stopped by PID on exit."""
    d = Path(tempfile.mkdtemp(prefix='catnb-slurm-')); procs = []
    host = socket.gethostname().split('.')[0]
    key = d/'munge.key'; key.write_bytes(os.urandom(1024)); key.chmod(0o400)
    sock = d/'munge.sock'
    conf = d/'slurm.conf'
    conf.write_text(f"""ClusterName=catnbtest
SlurmctldHost={host}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmdTimeout=60
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    for sub in ('state', 'spool'): (d/sub).mkdir()
    env = dict(os.environ, SLURM_CONF=str(conf))
    pre = ['nice', '-n', str(nice)]
    def start(cmd, name):
        p = subprocess.Popen(pre + cmd, env=env, stdout=open(d/f'{name}.out', 'w'), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((name, p)); return p
    try:
        start(['munged', '-F', '--force', f'--socket={sock}', f'--key-file={key}', f'--pid-file={d}/munged.pid',
               f'--log-file={d}/munged.log', f'--seed-file={d}/munged.seed'], 'munged')
        for _ in range(50):
            if sock.exists(): break
            time.sleep(0.2)
        start(['slurmctld', '-D', '-i', '-f', str(conf)], 'slurmctld')
        time.sleep(2)
        start(['slurmd', '-D', '-f', str(conf), '-N', host], 'slurmd')
        for _ in range(60):
            r = subprocess.run(['sinfo', '-h', '-o', '%T'], env=env, capture_output=True, text=True)
            if r.stdout.strip() in ('idle', 'mixed', 'allocated'): break
            time.sleep(1)
        else:
            logs = '\n'.join(f'--- {p.name}\n' + p.read_text()[-1500:] for p in sorted(d.glob('*.log')) + sorted(d.glob('*.out')))
            raise RuntimeError(f"one-node SLURM did not come up (sinfo: {r.stdout.strip()!r} {r.stderr.strip()!r})\n{logs}")
        yield dict(SLURM_CONF=str(conf), folder=str(d), host=host, pids={n: p.pid for n, p in procs})
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)                  # by PID: only what this fixture started
                try: p.wait(15)
                except subprocess.TimeoutExpired: os.kill(p.pid, signal.SIGKILL); p.wait()
        shutil.rmtree(d, ignore_errors=True)

import pytest
from cat_nb.executors import Job, JobFailed, LocalExecutor, SlurmExecutor, make_executor
from conftest import cat_nb_exe


# ---------------------------------------------------------------------------------------------- jobs for the tests
def count_to(folder: str, n: int, sleep_s: float) -> int:
    "A resumable toy job: counts to `n`, one checkpoint per step (`folder/ckpt`); appends the step it starts from to `folder/starts`."
    f = Path(folder); f.mkdir(parents=True, exist_ok=True)
    step = int((f/'ckpt').read_text()) if (f/'ckpt').exists() else 0
    with open(f/'starts', 'a') as s: s.write(f'{step}\n')
    while step < n:
        time.sleep(sleep_s); step += 1
        (f/'ckpt.part').write_text(str(step)); os.replace(f/'ckpt.part', f/'ckpt')
    return n * 10

def always_fails(x: str) -> int: return int(x)


# ---------------------------------------------------------------------------------------------- local (default suite)
def test_local_executor_runs_jobs_in_order_and_keeps_going():
    jobs = [Job('a', pow, (2, 5)), Job('bad', always_fails, ('x',)), Job('c', pow, (3, 3), key=('c', 3))]
    for workers in (1, 2):                      # in this process, then a pool of 2 spawned processes
        res, err = LocalExecutor(workers, 'cpu').run(jobs)
        assert res == {'a': 32, ('c', 3): 27} and list(res) == ['a', ('c', 3)]
        assert list(err) == ['bad'] and isinstance(err['bad'], ValueError)
    ex = make_executor('local', 1, 'cpu'); ex.run(jobs)
    assert [f['name'] for f in ex.failures()] == ['bad']


class Recording(LocalExecutor):
    "The local executor, keeping the jobs it was given."
    def __init__(self): super().__init__(1, 'cpu'); self.jobs = []
    def run(self, jobs, desc='jobs', progress=False):
        self.jobs += list(jobs); return super().run(jobs, desc, progress)


def test_pipeline_builders_go_through_the_executor(tmp_path, monkeypatch):
    "build_affinities hands its jobs to the executor given (log folders named after the artefact), then finds them cached."
    monkeypatch.setenv('CAT_NB_PIPELINE', str(tmp_path/'pipe'))
    from cat_nb.pipeline import build_affinities, affinity_path
    from cat_nb.synth import write_synth
    roots = {l: str(tmp_path/l) for l in ('ade20k', 'cityscapes')}
    for l, r in roots.items(): write_synth(Path(r), l, n_train=4, n_val=2, size=32, seed=0, progress=False)
    jobs = [('ade20k', 'cityscapes', 'random', s, None) for s in (0, 1)]
    ex = Recording()
    built = build_affinities(jobs, 'quick', roots, 'cpu', executor=ex)
    assert set(built) == set(jobs) and [j.key for j in ex.jobs] == jobs
    for j, job in zip(jobs, ex.jobs):
        p = affinity_path(*j[:3], 'quick', *j[3:], roots)
        assert p.exists() and job.log_dir == p.parent/'slurm'/p.stem and job.name.startswith('ade20k cityscapes random')
    ex2 = Recording(); assert build_affinities(jobs, 'quick', roots, 'cpu', executor=ex2) == {} and ex2.jobs == []


# ---------------------------------------------------------------------------------------------- a real SLURM (slow)
@pytest.fixture(scope='module')
def slurm():
    why = install_slurm()
    if why and 'not root' in why: pytest.skip(why)
    if why: print(why)
    import cloudpickle                             # the toy jobs above travel by value (the nodes import cat_nb, not tests/)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    old = os.environ.get('SLURM_CONF')
    with one_node_slurm() as c:
        os.environ['SLURM_CONF'] = c['SLURM_CONF']
        yield c
    if old is None: os.environ.pop('SLURM_CONF', None)
    else: os.environ['SLURM_CONF'] = old


def _marker(p: Path) -> dict: return json.loads((p/'job.json').read_text())

@pytest.mark.slow
def test_slurm_array_cancelled_job_resumes_failing_job_reported(slurm, tmp_path):
    ex = SlurmExecutor(tmp_path/'submitit', max_retries=1, poll_s=1, grace_s=3, time_min=10)
    runs = {n: tmp_path/f'run{n}' for n in (1, 2)}
    jobs = [Job(f'count {n}', count_to, (str(runs[n]), 4 if n == 1 else 30, 1.0), log_dir=runs[n]/'slurm') for n in (1, 2)]   # 2: long enough to be killed
    jobs.append(Job('fails', always_fails, ('x',), log_dir=tmp_path/'bad'/'slurm'))
    out = {}
    t = threading.Thread(target=lambda: out.update(r=ex.run(jobs, 'toy'))); t.start()
    while not ((runs[2]/'ckpt').exists() and int((runs[2]/'ckpt').read_text()) >= 3):            # the long job is mid-run ...
        assert t.is_alive(); time.sleep(0.5)
    victim = _marker(runs[2]/'slurm')['job_id']
    subprocess.run(['scancel', victim], check=True)                                                # ... kill it
    print(f'scancel {victim} at step {(runs[2]/"ckpt").read_text()}')
    t.join(300); assert not t.is_alive()
    res, err = out['r']
    assert res == {'count 1': 40, 'count 2': 300}
    starts = [int(x) for x in (runs[2]/'starts').read_text().split()]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 3, starts                           # resubmitted, resumed
    m = _marker(runs[2]/'slurm'); assert m['history'][0] == victim and len(m['history']) == 2 and m['state'] == 'done'
    assert '_' in victim                                                                           # it was a task of a job array
    assert list(err) == ['fails'] and isinstance(err['fails'], JobFailed) and err['fails'].attempts == 2
    assert 'ValueError' in Path(err['fails'].log).read_text() and str(tmp_path/'bad'/'slurm') in err['fails'].log
    assert [f['name'] for f in ex.failures()] == ['fails']
    assert any(f'{victim} ended CANCELLED; resubmitting' in l for l in ex.log), ex.log
    log = (runs[2]/'slurm'/f'{victim}.log').read_text(); assert '== count 2: job ' + victim in log


@pytest.mark.slow
def test_slurm_second_submitter_waits_for_queued_jobs(slurm, tmp_path):
    "A second run over the same jobs while the first one's are queued or running submits nothing: it waits and collects them."
    runs = [tmp_path/f'r{i}' for i in range(3)]
    jobs = lambda: [Job(f'job {i}', count_to, (str(r), 3, 1.0), log_dir=r/'slurm') for i, r in enumerate(runs)]
    a, b, out = SlurmExecutor(tmp_path/'submitit', poll_s=1, grace_s=3), SlurmExecutor(tmp_path/'submitit', poll_s=1, grace_s=3), {}
    ta = threading.Thread(target=lambda: out.update(a=a.run(jobs(), 'first'))); ta.start()
    while not all((r/'slurm'/'job.json').exists() for r in runs): time.sleep(0.2)
    rb = b.run(jobs(), 'second'); ta.join(120)
    assert rb == out['a'] == ({f'job {i}': 30 for i in range(3)}, {})
    assert sum('already queued' in l for l in b.log) == 3 and not any(l.startswith('submitted') for l in b.log)
    for r in runs: assert len(_marker(r/'slurm')['history']) == 1 and (r/'starts').read_text().split() == ['0']


def _reproduce(tmp_path, name, *extra):
    env = dict(os.environ, CAT_NB_PIPELINE=str(tmp_path/f'pipe_{name}'), OMP_NUM_THREADS='1')
    t0 = time.time()
    r = subprocess.run(['nice', '-n', '15', cat_nb_exe(), 'reproduce', '--preset', 'quick', '--only', 'table3',
                        '--out', str(tmp_path/f'out_{name}'), *extra], env=env, capture_output=True, text=True, timeout=3600)
    print(f'--- {name}: {time.time() - t0:.0f}s\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp_path/f'out_{name}'/'table3', time.time() - t0


@pytest.mark.slow
def test_reproduce_table3_on_slurm_equals_local(slurm, tmp_path):
    "`cat-nb reproduce --executor slurm --only table3` (every artefact built by SLURM jobs) writes the tables the local run writes."
    local, t_local = _reproduce(tmp_path, 'local')
    cluster, t_slurm = _reproduce(tmp_path, 'slurm', '--executor', 'slurm', '--slurm-time', '30', '--slurm-max-retries', '1')
    import pandas as pd
    csvs = sorted(p.relative_to(local) for p in local.rglob('*.csv'))
    assert csvs and csvs == sorted(p.relative_to(cluster) for p in cluster.rglob('*.csv'))
    timing = ['train_seconds', 'eval_seconds', 'run']               # wall times, and run folders under each pipeline root
    for p in csvs:
        a, b = pd.read_csv(local/p), pd.read_csv(cluster/p)
        pd.testing.assert_frame_equal(a.drop(columns=timing, errors='ignore'), b.drop(columns=timing, errors='ignore'), check_exact=True)
    for p in local.rglob('*.md'): assert (cluster/p.relative_to(local)).read_text() == p.read_text(), p
    logs = list((tmp_path/'pipe_slurm'/'transfer').glob('*/slurm/*.log'))
    assert logs and all(_marker(l.parent)['state'] == 'done' for l in logs)
    print(f'table3 quick: local {t_local:.0f}s, slurm {t_slurm:.0f}s')


# ---------------------------------------------------------------------------------------------- a multi-GPU job's torchrun path (slow)
_TORCHRUN_JOB = r'''
import json, sys
from pathlib import Path
from cat_nb.executors import LocalExecutor, JobCall
from cat_nb.pipeline import run_plan, run_dir
from cat_nb.runspec import RunSpec

class Torchrun2(LocalExecutor):
    "A job with a DDP part runs as a SLURM job with `--slurm-gpus-per-job 2` does (`JobCall(job, nproc=2)`); the others as locally."
    def run(self, jobs, desc='jobs', progress=False):
        res, err = {}, {}
        for j in jobs:
            if j.ddp is None: r, e = super().run([j], desc, progress)
            else:
                try: r, e = {j.key: JobCall(j, 2)()}, {}
                except Exception as x: r, e = {}, {j.key: x}
            res |= r; err |= e
        return res, err

spec = RunSpec('ade20k', 'cocostuff', 'cat', 'random', n_images=8)
rows = run_plan([spec], 'quick', device='cpu', workers=1, progress=False, executor=Torchrun2(1, 'cpu'))
Path(sys.argv[1]).write_text(json.dumps(dict(run=str(run_dir(spec, 'quick', None, 'cpu')), fid=float(rows.fid[0]))))
'''

@pytest.mark.slow
def test_multi_gpu_job_trains_its_run_under_torchrun(tmp_path):
    """The path of `--slurm-gpus-per-job N` inside an allocation, on CPU processes (gloo) instead of GPUs: `JobCall(job, nproc=2)`
    trains the run under `torchrun --nproc_per_node=2` (the run's log says world 2), then the job's own call evaluates it once."""
    env = dict(os.environ, CAT_NB_PIPELINE=str(tmp_path/'pipe'), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', _TORCHRUN_JOB, str(tmp_path/'out.json')], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads((tmp_path/'out.json').read_text()); run = Path(out['run'])
    starts = [m for m in map(json.loads, (run/'metrics.jsonl').read_text().splitlines()) if m.get('event') in ('start', 'resume')]
    assert [m['world'] for m in starts] == [2]                                  # one start, two processes in the process group
    log = next((run/'slurm').glob('*.log')).read_text()
    assert '--nproc_per_node=2' in log and 'torch.distributed.run' in log and log.count('== run ') == 2   # job start and end lines
    assert (run/'done.json').exists() and (run/'pipeline_eval.json').exists() and out['fid'] > 0
    print(f"torchrun job: world 2, FID {out['fid']:.1f}, log {len(log.splitlines())} lines")

"""Issue 20, session 10: class names augmented with WordNet knowledge (the hypernym or the gloss of one noun sense, the sense chosen
by the dataset's own context: the sense text nearest the mean embedding of the dataset's class names), added to the default
`synonyms_prompt` embedding. Configurations are compared on the development pairs; --heldout scores the base and the one
configuration given with --only on the held-out pairs (run once, after choosing on the development pairs).

    apt-get install wordnet-base wordnet-sense-index          # Princeton WordNet 3.0 (Debian), read by nltk
    pip install nltk
    python benchmarks/text_wordnet.py [--wordnet /usr/share/wordnet] [--heldout --only "('hyper', 1.0, 'ctx')"]

MiniLM, one thread. Not part of the package: it did not beat the naive prompt on the held-out pairs (nbs/21).
"""
import os, sys, shutil, tempfile, torch, numpy as np
from pathlib import Path
torch.set_num_threads(1)
LEXNAMES = ('adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition noun.communication '
            'noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant '
            'noun.possession noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change '
            'verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion '
            'verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl').split()   # WordNet's lexicographer files, in id order

def nltk_layout(src: str) -> str:
    "An nltk_data folder with corpora/wordnet holding the files of the WordNet dict folder `src` (plus `lexnames`, which Debian omits)."
    root = Path(tempfile.mkdtemp()); d = root/'corpora'/'wordnet'; d.mkdir(parents=True)
    for f in Path(src).iterdir():
        if f.is_file(): shutil.copy(f, d/f.name)
    if not (d/'lexnames').exists():
        pos = dict(adj=3, adv=4, noun=1, verb=2)
        (d/'lexnames').write_text(''.join(f'{i:02d}\t{n}\t{pos[n.split(".")[0]]}\n' for i, n in enumerate(LEXNAMES)))
    return str(root)

_wdir = sys.argv[sys.argv.index('--wordnet') + 1] if '--wordnet' in sys.argv else '/usr/share/wordnet'
os.environ['NLTK_DATA'] = nltk_layout(_wdir)
from nltk.corpus import wordnet as wn
import torch.nn.functional as F
from cat_nb.affinity_text import (load_text_encoder, class_synonyms, clean_name, known_correspondences, heldout_correspondences,
                                  DIRECTIONS, top1_agreement, topk_agreement, make_affinity, class_embeddings)
enc = load_text_encoder('minilm', verbose=False)
E = lambda ts: enc.encode(ts)

def senses(name):
    w = name.strip().replace(' ', '_')
    ss = wn.synsets(w, 'n')
    if not ss and ' ' in name: ss = wn.synsets(name.split()[-1], 'n')   # head noun
    return ss[:6]

def sense_text(name, s, kind):
    if kind == 'gloss': return f'a photo of a {name}, {s.definition()}.'
    hyp = s.hypernyms() or s.instance_hypernyms()
    h = hyp[0].lemma_names()[0].replace('_', ' ') if hyp else None
    return f'a photo of a {name}, a kind of {h}.' if h else f'a photo of a {name}.'

def class_emb(like, kind, w, ctx_mode):
    syn = class_synonyms(like)
    base = class_embeddings(syn, enc, 'synonyms_prompt')               # (C, D)
    if kind == 'none': return base
    ctx = F.normalize(base.mean(0), dim=0)
    out = []
    for i, s in enumerate(syn):
        main = clean_name(s[0]); ss = senses(main)
        if not ss: out.append(base[i]); continue
        texts = [sense_text(main, x, kind) for x in ss]
        G = E(texts)
        if ctx_mode == 'first': j = 0
        else: j = int((G @ ctx).argmax())
        out.append(F.normalize(base[i] + w * G[j], dim=0))
    return torch.stack(out)

def score(kind, w, ctx_mode, check):
    gt_fn = dict(dev=known_correspondences, heldout=heldout_correspondences)[check]
    emb = {l: class_emb(l, kind, w, ctx_mode) for l in ('ade20k', 'cocostuff', 'cityscapes')}
    r1, r3 = [], []
    for s, t in DIRECTIONS:
        S = (emb[t] @ emb[s].T).numpy()
        a = make_affinity(S, 'similarity', t, s, 'text', norm='softmax', temperature=0.05)
        gt = gt_fn(t, s); r1.append(top1_agreement(a, gt)['agreement']); r3.append(topk_agreement(a, gt, 3))
    return r1, r3

checks = ['dev'] + (['heldout'] if '--heldout' in sys.argv else [])
configs = [('none', 0, 'ctx')] + [(k, w, c) for k in ('gloss', 'hyper') for w in (0.5, 1.0) for c in ('ctx', 'first')]
if '--only' in sys.argv: configs = [('none', 0, 'ctx'), eval(sys.argv[sys.argv.index('--only') + 1])]
print('directions', [f'{s}->{t}' for s, t in DIRECTIONS])
for check in checks:
    for k, w, c in configs:
        r1, r3 = score(k, w, c, check)
        print(f'{check:8s} {k:6s} w={w:<4} {c:6s} top1 {" ".join(f"{x:.3f}" for x in r1)} mean {np.mean(r1):.3f} | top3 {" ".join(f"{x:.3f}" for x in r3)} mean {np.mean(r3):.3f}', flush=True)

#!/usr/bin/env python3
"""The numbers docs/accuracy.md compares for runs of the cifar-short recipe (ours or this
reference's): final and best test error, final training error (un-augmented images), and the
training loss at steps 10, 1950, 2930 and 3900 (each the mean of its 10-step log window), then
mean +- sample std per group of finished runs.

Usage: summarize.py LABEL=RUN_DIR[,RUN_DIR...] ...
  e.g. summarize.py resnet-tui=runs/resnet20-s1,runs/resnet20-s2 PyTorch=runs/resnet20-torch-s1
"""
import json
import statistics as st
import sys

KEYS = ['final_test', 'best_test', 'final_train', 'loss@10', 'loss@1950', 'loss@2930', 'loss@3900']


def summary(run_dir):
    recs = [json.loads(line) for line in open(run_dir + '/metrics.jsonl')]
    loss = {r['step']: r['loss'] for r in recs if r['kind'] == 'step'}
    evals = lambda split: [r['err'] * 100 for r in recs if r['kind'] == 'eval' and r.get('split') == split]
    test, train = evals('test'), evals('train')
    nan = float('nan')
    return {
        'final_test': test[-1] if test else nan,
        'best_test': min(test) if test else nan,
        'final_train': train[-1] if train else nan,
        **{f'loss@{s}': loss.get(s, nan) for s in (10, 1950, 2930, 3900)},
        'last_step': max(loss, default=0),
        'time_s': max(r['time_s'] for r in recs),
    }


def main(args):
    if not args or any('=' not in a for a in args):
        sys.exit(__doc__)
    print('| group | run | ' + ' | '.join(KEYS) + ' | steps | time s |')
    print('|---' * (len(KEYS) + 4) + '|')
    for arg in args:
        label, dirs = arg.split('=', 1)
        done = []
        for d in dirs.split(','):
            s = summary(d)
            print(f'| {label} | {d} | ' + ' | '.join(f'{s[k]:.3f}' for k in KEYS)
                  + f" | {s['last_step']} | {s['time_s']:.0f} |")
            if s['last_step'] == 3900:
                done.append(s)
        if len(done) > 1:
            print(f'| {label} | mean +- std of {len(done)} | '
                  + ' | '.join(f'{st.mean(s[k] for s in done):.3f} +- {st.stdev(s[k] for s in done):.3f}'
                               for k in KEYS) + ' | | |')


if __name__ == '__main__':
    main(sys.argv[1:])

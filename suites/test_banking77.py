"""BANKING77 intent classification: does the classification adapter beat the base model?

The base model (SmolLM2-135M-Instruct) is asked to answer with one of 77 intent labels it has
never seen; the `banking77` demo adapter was trained on 960 rows of the BANKING77 training split.
A third contender, the base model with 8 solved examples in its prompt (drawn from the training
split, never the evaluation split), shows how much of the adapter's gain plain prompting recovers.

Gates (each one a pytest test):
- the adapter must beat the base on accuracy, significantly (McNemar's exact test, alpha 0.05);
- macro-F1 of the adapter must clear an absolute floor;
- the evaluation set must not overlap the training file by more than 5% (it overlaps by 2.5%:
  BANKING77 test repeats some training utterances verbatim or nearly so).

Data: BANKING77 (Casanueva et al., 2020), CC BY 4.0; see data/README.md.
"""

from ftevals import FewShot, SamplingSpec, Suite

banking77 = Suite(
    name="banking77",
    task="classification",
    description="BANKING77 intent classification (77 labels), answer with the label only",
    dataset="../data/banking77/test.jsonl",
    labels="../data/banking77/labels.json",
    limit=200,
    models=["base", "banking77"],
    fewshot=FewShot(k=8, pool="../data/banking77/train.jsonl"),
    sampling=SamplingSpec(max_tokens=16),
    train_files=["../data/banking77/train.jsonl"],
    gates=[
        "accuracy > base significantly",
        "macro_f1 >= 0.20",
        "contamination <= 0.05",
        # The adapter must change at least half of the base's answers (engine integrity, docs/gates.md).
        "integrity >= 0.5",
    ],
)

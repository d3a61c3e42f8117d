"""DialogSum summarisation: is the summarisation adapter's ROUGE better than the base model's?

The `dialogsum` demo adapter was trained on 160 dialogues of the DialogSum dev split; this suite
evaluates on the test split (disjoint from dev) against the first human reference (`summary1`),
with ROUGE-1/2/L F-measures, stemming on, computed exactly as rouge-score does.

Data: DialogSum (Chen et al., ACL Findings 2021), CC BY-NC-SA 4.0 (non-commercial); see data/README.md.
"""

from ftevals import SamplingSpec, Suite

dialogsum = Suite(
    name="dialogsum",
    task="generation",
    description="DialogSum dialogue summarisation, ROUGE against summary1",
    dataset="../data/dialogsum/test.jsonl",
    limit=100,
    models=["base", "dialogsum"],
    metrics=["rougeL", "rouge1", "rouge2"],
    # One or two sentences: 64 tokens is enough, and it bounds the cost of chatty outputs.
    sampling=SamplingSpec(max_tokens=64),
    train_files=["../data/dialogsum/dev.jsonl"],
    gates=[
        "rougeL > base significantly",
        "rouge1 >= base",
        "contamination <= 0.05",
    ],
)

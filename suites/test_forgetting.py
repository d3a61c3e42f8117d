"""Forgetting: what does each adapter lose on tasks it was not trained for?

An adapter is trained for one task; it runs in production on whatever users send. Each suite here
evaluates the adapters on a task they never saw, with the base model as the reference, so a drop
is forgetting (or interference), reported with its paired CI and the examples that flipped.

- `forgetting-dialogsum`: the classification and extraction adapters asked to summarise.
- `forgetting-restaurant8k`: the classification and summarisation adapters asked for JSON.
- `forgetting-gsm8k`: a general-capability probe (grade-school maths) for all three adapters. At
  135M parameters the base model is near the floor on GSM8K, so this probe can only catch collapse;
  on a larger base model it is the usual first forgetting check.

Gates hold the adapters to a maximum drop against the base. A regression the team knows about and
has accepted is declared in `known_failures` with the reason: its gate test is an expected failure
(pytest xfail, strict), so the run stays green while the report still shows the regression, and the
day the adapter stops regressing the test fails until the entry is removed.

Data: see data/README.md (DialogSum CC BY-NC-SA 4.0, Restaurant-8k CC BY 4.0, GSM8K MIT).
"""

from ftevals import SamplingSpec, Suite

forgetting_dialogsum = Suite(
    name="forgetting-dialogsum",
    task="forgetting",
    description="Adapters not trained for summarisation, on DialogSum (ROUGE-L against summary1)",
    dataset="../data/dialogsum/test.jsonl",
    limit=40,
    models=["base", "banking77", "restaurant8k"],
    metrics=["rougeL", "rouge1"],
    sampling=SamplingSpec(max_tokens=64),
    gate_models="all",
    gates=["rougeL >= base - 0.05"],
    known_failures={
        "banking77: rougeL >= base - 0.05": "the classification adapter answers a dialogue with an intent label "
        "instead of a summary (measured: ROUGE-L 0.053 vs base 0.147 with LoRA requests, 0.068 vs 0.139 merged, bf16)",
    },
)

forgetting_restaurant8k = Suite(
    name="forgetting-restaurant8k",
    task="forgetting",
    description="Adapters not trained for JSON extraction, on Restaurant-8k (JSON validity, slot F1)",
    dataset="../data/restaurant8k/test.jsonl",
    limit=60,
    models=["base", "banking77", "dialogsum"],
    metrics=["json_valid", "field_f1"],
    sampling=SamplingSpec(max_tokens=32),
    gate_models="all",
    gates=["json_valid >= base - 0.05"],
)

forgetting_gsm8k = Suite(
    name="forgetting-gsm8k",
    task="forgetting",
    description="General-capability probe: GSM8K final-answer accuracy",
    dataset="../data/gsm8k/test.jsonl",
    limit=30,
    models=["base", "banking77", "dialogsum", "restaurant8k"],
    metrics=["gsm8k_answer"],
    sampling=SamplingSpec(max_tokens=96),
    gate_models="all",
    gates=["gsm8k_answer >= base - 0.10"],
)

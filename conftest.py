"""Project-wide pytest settings for both `pytest suites/` and `pytest tests/`.

No model or dataset may come from a hub on these machines: offline mode turns an accidental hub
call into an immediate, explicit error instead of a hang. Tokenizer worker threads are switched
off because vLLM forks its engine process and the two fight over the 2 cores.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

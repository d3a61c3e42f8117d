"""transformers + peft backend: the reference implementation.

Slow but simple and independent of vLLM: it is what the parity tests compare vLLM against (an
adapter that vLLM silently ignored would show up as a mismatch), and what runs on machines without
vLLM. Greedy decoding only matches vLLM token for token when both run in float32 on the same prompt
ids, which is how this backend is used in tests.

Each adapter is loaded once onto a shared base with peft and selected per request (`set_adapter`),
or disabled for base requests, so memory holds one base however many adapters there are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, MissingDependencyError
from ..models import ResolvedModel
from ..offline import hub_offline
from ..specs import ModelSpec
from .base import BackendDefaults, Generation, GenerationRequest
from .render_memo import MemoisedRendering
from .templates import load_tokenizer


@dataclass(frozen=True)
class HFSettings:
    dtype: str = "float32"
    batch_size: int = 8
    trust_remote_code: bool = False


class HFBackend(MemoisedRendering, BackendDefaults):
    name = "hf"
    settings_type = HFSettings

    def __init__(self, models: dict[str, ResolvedModel], settings: HFSettings | None = None) -> None:
        self.models = models
        self.settings = settings or HFSettings()
        self._tokenizers: dict[str, Any] = {}
        self._loaded: dict[str, Any] = {}  # base path -> peft-wrapped or plain model
        _require_engine()

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "dtype": self.settings.dtype, "trust_remote_code": self.settings.trust_remote_code}

    def tokenizer(self, model: ModelSpec) -> Any:
        path = self.models[model.name].base.path
        if str(path) not in self._tokenizers:
            self._tokenizers[str(path)] = load_tokenizer(path, self.settings.trust_remote_code)
        return self._tokenizers[str(path)]

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        self.save_renders()  # every prompt is rendered by now

    def _model_for(self, base_key: str) -> Any:  # noqa: C901 - one load path, read top to bottom
        if base_key in self._loaded:
            return self._loaded[base_key]
        hub_offline()
        try:
            import peft  # noqa: F401 - adapters load through it; fail here, before minutes of model loading
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise MissingDependencyError("transformers", "pip install 'ftevals[hf]'", str(exc)) from exc
        dtype = getattr(torch, self.settings.dtype)
        model = AutoModelForCausalLM.from_pretrained(
            base_key, dtype=dtype, trust_remote_code=self.settings.trust_remote_code
        )
        adapters = [m for m in self.models.values() if m.adapter and str(m.base.path) == base_key]
        if adapters:
            from peft import PeftModel

            first, *rest = sorted(adapters, key=lambda m: m.name)
            assert first.adapter is not None
            model = PeftModel.from_pretrained(model, str(first.adapter.path), adapter_name=first.name)
            for m in rest:
                assert m.adapter is not None
                model.load_adapter(str(m.adapter.path), adapter_name=m.name)
        model.eval()
        self._loaded[base_key] = model
        return model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        import torch

        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[str, str | None, Any], list[int]] = {}
        for i, r in enumerate(requests):
            if not r.sampling.greedy:
                raise BackendError("the hf backend decodes greedily only; use the vllm backend for sampling")
            base_key = str(self.models[r.model.name].base.path)
            groups.setdefault((base_key, r.model.name if r.model.adapter else None, r.sampling), []).append(i)
        for (base_key, adapter_name, sampling), idxs in groups.items():
            model = self._model_for(base_key)
            tok = self.tokenizer(requests[idxs[0]].model)
            for start in range(0, len(idxs), self.settings.batch_size):
                batch = idxs[start : start + self.settings.batch_size]
                for i in batch:
                    # One prompt at a time (no padding): padding changes float32 reductions and
                    # would break exact parity with vLLM on longer outputs.
                    ids = tok.encode(requests[i].prompt, add_special_tokens=False)
                    t0 = time.monotonic()
                    with torch.no_grad(), _adapter(model, adapter_name):
                        out = model.generate(
                            torch.tensor([ids]),
                            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            max_new_tokens=sampling.max_tokens,
                            do_sample=False,
                            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                        )
                    new = out[0, len(ids) :].tolist()
                    finish = "length"
                    if new and new[-1] == tok.eos_token_id:
                        new = new[:-1]
                        finish = "stop"
                    text = tok.decode(new, skip_special_tokens=True)
                    for s in sampling.stop:
                        if s in text:
                            text, finish = text[: text.index(s)], "stop"
                    results[i] = Generation(text, len(ids), len(new) + (finish == "stop"), finish, time.monotonic() - t0)
                    self._report_done(1)
        return [g for g in results if g is not None]

    def close(self) -> None:
        self.save_renders()
        self._loaded.clear()


class _adapter:
    """Select an adapter for the duration of a call, or disable adapters for the base model."""

    def __init__(self, model: Any, name: str | None) -> None:
        self.model, self.name = model, name
        self._ctx: Any = None

    def __enter__(self) -> None:
        if not hasattr(self.model, "set_adapter"):
            return
        if self.name is None:
            self._ctx = self.model.disable_adapter()
            self._ctx.__enter__()
        else:
            self.model.set_adapter(self.name)

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def _require_engine() -> None:
    """Refuse, with the install command, before any work: the light core has no torch/transformers/peft."""
    for module in ("torch", "transformers", "peft"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(module, "pip install 'ftevals[hf]'", str(exc)) from exc


__all__ = ["HFBackend", "HFSettings"]

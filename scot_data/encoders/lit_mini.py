"""The old home of the lit-mini encoder, now the ``lit-mini`` variant of
:mod:`scot_data.encoders.lit`: the name stays importable for :mod:`scot_data.fit_lit.features`,
which annotates with it, until that module imports :class:`LitEncoder` itself."""

from __future__ import annotations

from scot_data.encoders.lit import LitEncoder as LitMiniEncoder

__all__ = ["LitMiniEncoder"]

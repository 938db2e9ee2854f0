"""Fit a LiT encoder's projection heads (``lit-mini``, ``lit-base``) on (image, caption) pairs:
``scot fit-lit [--encoder lit-base]``.

The towers are locked, so their pooled features are computed once (images decoded in
DataLoader workers) and cached in ``tower_features.safetensors``; fitting the two linear
heads and the temperature with a symmetric InfoNCE loss then costs milliseconds a step,
and a re-fit with other settings re-uses the cache.

Images, not pairs, are split: a held-out image never appears in training with another of
its captions. A validation slice of the training images decides when to stop (small sets
overfit within a few hundred steps); the held-out images are used only for the report.
The model card reports text->image Recall@1/5/10 over the held-out images,
beside the same figures for the untrained (random) heads and the chance level ``K / N``.

Outputs in ``out_dir``: ``heads.safetensors``, ``tower_features.safetensors``,
``model_card.json``, ``MODEL_CARD.md`` and, last, ``manifest.json``. The same inputs and
settings with a finished ``out_dir`` do nothing.

Modules: ``config`` (stage name, files, :class:`FitLitConfig`), ``pairs`` (caption tables
-> pairs), ``features`` (the tower feature cache), ``train`` (the split, recall of the
heads, the fit), ``card`` (result and model card) and ``stage`` (``fit_lit_heads``,
``fit_lit_from_captions``). Text->image Recall@K is
:mod:`scot_data.evaluate.text_image_recall`; the model and its heads stay in
:mod:`scot_data.encoders.lit`.
"""

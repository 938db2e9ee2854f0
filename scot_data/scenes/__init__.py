"""The scenes stage: training clip-art objects composed into captioned scenes, with template
edits of each (``scot scenes``; :mod:`~scot_data.scenes.stage`, settings in
:mod:`~scot_data.scenes.config`)."""

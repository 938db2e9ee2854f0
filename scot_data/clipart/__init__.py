"""The clip-art scene kit shared by the training scenes (``scot_data.scenes``) and the
clip-art benchmark (``evaluate.clipart``): object names (``names``), cut-outs (``cutout``),
the look and the benchmark's settings (``config``), scenes and their rendering (``scene``)
and the one definition of an edit (``edits.apply_edit``). It imports no other stage.
"""

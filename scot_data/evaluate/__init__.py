"""Evaluation: benchmarks (one registry), metrics, paired statistics, reports, search.

``registry.BENCHMARKS`` names every benchmark (reader, per-query metrics, protocol,
submission writer, builder); ``evaluate.evaluate(EvalConfig(...), out)`` scores one with
the baselines and a Combiner through the gallery cache; ``stats`` gives paired bootstrap
intervals of one method minus another; ``report.write_report`` renders ``results.json``;
``ablate`` runs the paper's ablations (chosen on val, reported on test); ``clipart`` builds
the offline benchmark; ``retriever`` / ``search`` answer one composed query. No Prefect.
Nothing is imported here, so reading the registry (the spec does) does not load torch.
"""

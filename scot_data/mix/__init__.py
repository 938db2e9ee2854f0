"""The mix stage: a seeded, weighted sample of several finished triplet tables, written as
one finished triplets table (``scot mix``, the spec's ``mix:`` section, ``<out>/mix``)."""

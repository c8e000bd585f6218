"""`ember.compile`."""


def compile(model, example_inputs=None, **options):  # noqa: A001  (placeholder until api lands)
    raise NotImplementedError

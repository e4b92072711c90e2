"""What a run writes for the user: :mod:`zsseg_rt.outputs.plan` (one policy for every output: declared and checked
before the first frame, staged, put in place when the run has ended well) and :mod:`zsseg_rt.outputs.owner` (the
lock a run holds on each output from its start to its end). The files themselves are written whole by
:mod:`zsseg_rt.io_safety`. Light to import: nothing is imported here.
"""

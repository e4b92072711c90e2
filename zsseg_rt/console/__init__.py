"""What every ``zsseg`` command shares with the library code it runs: one-line errors and the signal rule
(:mod:`~zsseg_rt.console.errors`), signals at each phase of a start-up (:mod:`~zsseg_rt.console.signal_phases`),
progress bars a signal cannot leave half made (:mod:`~zsseg_rt.console.progress`), the end-of-run speed line
(:mod:`~zsseg_rt.console.speed`) and the argparse value types and Engine flags (:mod:`~zsseg_rt.console.arguments`).
The stream session, serve, batch and the preparation use them as the commands do, so they live below ``cli/``.
Light to import: nothing is imported here.
"""

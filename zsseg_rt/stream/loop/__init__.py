"""The stream loop's room: what runs a camera or a video through an Engine, frame after frame.

- :mod:`~zsseg_rt.stream.loop.session`: the ``Session`` that assembles sources, an Engine, the video filter and the
  outputs as ``zsseg camera`` does; :mod:`~zsseg_rt.stream.loop.session_options` (its options, checked) and
  :mod:`~zsseg_rt.stream.loop.session_summary` (its closing lines); :mod:`~zsseg_rt.stream.loop.session_left` (a loop
  left unfinished: a failed run).
- :mod:`~zsseg_rt.stream.loop.runner`: the loop itself (``StreamRunner``, ``MultiStreamRunner``), with
  :mod:`~zsseg_rt.stream.loop.capture` (a newest-frame capture thread per source), :mod:`~zsseg_rt.stream.loop.flight`
  (frames in flight on the device), :mod:`~zsseg_rt.stream.loop.writer` (a writer thread per source),
  :mod:`~zsseg_rt.stream.loop.protocols` (what the loop asks of what it drives) and
  :mod:`~zsseg_rt.stream.loop.vocabulary` (a class file watched for edits while it runs).
- :mod:`~zsseg_rt.stream.loop.live`: the ``LIVE`` preset's names (``zsseg camera --live``).

The public names are :mod:`zsseg_rt.stream`'s (``from zsseg_rt.stream import Session``). Nothing is imported here.
"""

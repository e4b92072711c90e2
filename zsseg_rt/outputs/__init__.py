"""What a run writes for the user, every output in one room.

- :mod:`zsseg_rt.outputs.plan` (one policy for every output: declared and checked before the first frame, staged, put
  in place when the run has ended well) and :mod:`zsseg_rt.outputs.owner` (the lock a run holds on each output from
  its start to its end): the foundation, below everything that writes.
- :mod:`zsseg_rt.outputs.kinds`: the table of output kinds (``OUTPUT_KINDS``, one row per kind: ``-o`` spec, options,
  which commands take it, its sink), and the sinks the rows open: :mod:`~zsseg_rt.outputs.sink_base` (the interface),
  :mod:`~zsseg_rt.outputs.sinks` (a window, the MJPEG preview), :mod:`~zsseg_rt.outputs.file_sinks` and
  :mod:`~zsseg_rt.outputs.video_writers` (videos, image folders), :mod:`~zsseg_rt.outputs.labels` (label PNGs),
  :mod:`~zsseg_rt.outputs.coco_sink` (COCO masks), :mod:`~zsseg_rt.outputs.image_files` (the files of each image
  `segment` and `batch` write as it is done: views, label PNGs), the robot outputs (:mod:`~zsseg_rt.outputs.robot_sinks`,
  :mod:`~zsseg_rt.outputs.mcap_sink`, :mod:`~zsseg_rt.outputs.foxglove_sink`, their messages
  :mod:`~zsseg_rt.outputs.ros_messages` and :mod:`~zsseg_rt.outputs.object_messages`), the loopback rule of the
  HTTP servers (:mod:`~zsseg_rt.outputs.loopback`), and the outputs of a run, one front end for every command
  (:mod:`~zsseg_rt.outputs.run_outputs`: a stream's, ``zsseg camera`` and a ``Session``, and those of a command
  handing its results over, ``zsseg batch``, with :mod:`~zsseg_rt.outputs.result_outputs`' frames and flags).
  These are runtime applications (they take Results and read the stream's sources' tables).

The files themselves are written whole by :mod:`zsseg_rt.io_safety`. Light to import: nothing is imported here (the
plan and the owner lock must not pull the sinks into the foundation).
"""

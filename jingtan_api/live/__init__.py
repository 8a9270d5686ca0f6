"""Live updates (issue #12): committed domain events fanned out to subscribers, in this process or across
processes (see :mod:`jingtan_api.live.broker`)."""

"""Devices and hosts: where a stack runs.

  distributed.py  the mesh and layout of configurations and examples over
                  devices, several hosts (jax.distributed), each host's share
  supervisor.py   --num_processes: starts the processes of a run on this
                  machine, watches them, forwards stop requests
"""

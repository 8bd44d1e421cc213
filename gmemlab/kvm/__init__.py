"""The running kernel as the oracle: run gmemlab traces on /dev/kvm (gmemlab kvm-run).

- ``uapi``: the KVM uAPI numbers and structures the runner needs (ctypes).
- ``runner``: a default VM with a guest_memfd bound at gpa 0; each trace event run on it
  gets the kernel's outcome as "expect".
- ``command``: the ``gmemlab kvm-run`` command.
"""

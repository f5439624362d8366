# Sourced by the open/close storm benchmarks. storm_policy NAME PREFIX prints the policy they
# load: sys_openat's path (string) and sys_close's fd (resolved to its path in the kernel), each
# with a Prefix filter. A PREFIX no path has makes the kernel filter every call (the cost of a
# policy on hot syscalls that match nothing); the storm file's own path makes it post every call.
storm_policy() {
  cat <<YAML
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: $1
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 1, type: string}
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["$2"]}
  - call: sys_close
    syscall: true
    args:
    - {index: 0, type: fd}
    selectors:
    - matchArgs:
      - {index: 0, operator: Prefix, values: ["$2"]}
YAML
}

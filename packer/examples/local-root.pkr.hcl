# Bakes the pause image into a root filesystem on this machine: a mounted VM image, a
# debootstrap tree or a chroot. No cloud account, no network; this is the template CI runs.
#
#   packer build -var root=/mnt/node-root packer/examples/local-root.pkr.hcl

variable "pausebake" {
  type        = string
  default     = "pausebake"
  description = "Path of the pausebake binary on the machine running packer."
}

variable "root" {
  type        = string
  description = "Root filesystem to bake into (containerd must not be running on it)."
}

variable "kubernetes_version" {
  type        = string
  default     = ""
  description = "Kubernetes version the node will run, e.g. 1.31.2; empty: detect it in the root."
}

variable "source_date_epoch" {
  type        = string
  default     = "0"
  description = "Timestamp for everything pausebake writes, so rebuilt images are identical."
}

source "null" "root" {
  communicator = "none"
}

build {
  sources = ["source.null.root"]

  provisioner "shell-local" {
    environment_vars = [
      "PAUSEBAKE=${var.pausebake}",
      "ROOT=${var.root}",
      "KUBERNETES_VERSION=${var.kubernetes_version}",
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
    inline = [
      "set -eu",
      "\"$PAUSEBAKE\" bake --root \"$ROOT\" $${KUBERNETES_VERSION:+--kubernetes-version \"$KUBERNETES_VERSION\"}",
      "\"$PAUSEBAKE\" verify --root \"$ROOT\"",
    ]
  }
}

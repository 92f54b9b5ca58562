# Builds a bootable node disk image on this machine, with no cloud account and no network:
# bakes the pause image into a root filesystem tree (a debootstrap root with a kernel, the
# unpacked root of a cloud image) and writes the tree as a raw ext4 disk image with
# `mkfs.ext4 -d` (no mount, no loop device). CI boots the result under qemu with no network
# device and runs a pod sandbox from it (tests/it/packer.rs).
#
#   packer build -var root=/srv/node-root -var disk=node.raw packer/examples/disk-image.pkr.hcl
#   qemu-system-x86_64 -kernel ... -append "root=/dev/vda rw" -drive file=node.raw,format=raw,if=virtio

variable "pausebake" {
  type        = string
  default     = "pausebake"
  description = "Path of the pausebake binary on the machine running packer."
}

variable "root" {
  type        = string
  description = "Root filesystem tree of the node image (containerd must not be running on it)."
}

variable "disk" {
  type        = string
  description = "Disk image to write: the root filesystem as ext4 on the whole disk (raw)."
}

variable "disk_size" {
  type        = string
  default     = "2G"
  description = "Size of the disk image, as mkfs.ext4 reads it (e.g. 2G, 8G)."
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

source "null" "disk" {
  communicator = "none"
}

build {
  sources = ["source.null.disk"]

  provisioner "shell-local" {
    environment_vars = [
      "PAUSEBAKE=${var.pausebake}",
      "ROOT=${var.root}",
      "DISK=${var.disk}",
      "DISK_SIZE=${var.disk_size}",
      "KUBERNETES_VERSION=${var.kubernetes_version}",
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
    inline = [
      "set -eu",
      "\"$PAUSEBAKE\" bake --root \"$ROOT\" $${KUBERNETES_VERSION:+--kubernetes-version \"$KUBERNETES_VERSION\"}",
      "\"$PAUSEBAKE\" verify --root \"$ROOT\"",
      "rm -f \"$DISK.tmp\"",
      "mkfs.ext4 -q -F -d \"$ROOT\" \"$DISK.tmp\" \"$DISK_SIZE\"",
      "mv \"$DISK.tmp\" \"$DISK\"",
    ]
  }
}

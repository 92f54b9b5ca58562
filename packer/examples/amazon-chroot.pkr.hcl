# Bakes pause into an AMI with the chroot builder: packer attaches a volume made from the
# source AMI to the build host and mounts it. pausebake runs on the build host against the
# mounted volume, so nothing inside the image is executed and its architecture may differ.
# Run this on an EC2 instance, as root.
#
# Packer 1.7+ without bundled builders: `packer plugins install github.com/hashicorp/amazon`.
#
#   sudo packer build -var pausebake=$(command -v pausebake) packer/examples/amazon-chroot.pkr.hcl

variable "pausebake" {
  type        = string
  default     = "/usr/local/bin/pausebake"
  description = "Path of the pausebake binary on the build host."
}

variable "kubernetes_version" {
  type        = string
  default     = ""
  description = "Kubernetes version the node will run; empty: detect it in the image."
}

variable "mount_path" {
  type        = string
  default     = "/mnt/pausebake-chroot"
  description = "Where the volume is mounted on the build host; pausebake bakes into it."
}

source "amazon-chroot" "node" {
  ami_name   = "pausebake-node-{{timestamp}}"
  mount_path = var.mount_path

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }
}

build {
  sources = ["source.amazon-chroot.node"]

  # Runs on the build host, outside the chroot: the volume is an offline root.
  provisioner "shell-local" {
    environment_vars = [
      "PAUSEBAKE=${var.pausebake}",
      "ROOT=${var.mount_path}",
      "KUBERNETES_VERSION=${var.kubernetes_version}",
    ]
    inline = [
      "set -eu",
      "\"$PAUSEBAKE\" bake --root \"$ROOT\" $${KUBERNETES_VERSION:+--kubernetes-version \"$KUBERNETES_VERSION\"}",
      "\"$PAUSEBAKE\" verify --root \"$ROOT\"",
    ]
  }
}

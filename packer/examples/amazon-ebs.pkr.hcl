# Bakes pause into an AMI built the usual way: boot an instance, provision it over SSH,
# snapshot it. pausebake runs on the instance against "/" with containerd stopped.
#
# Packer 1.7+ without bundled builders: `packer plugins install github.com/hashicorp/amazon`.
#
# The static release binary (`make dist`) runs on any Linux instance, whatever its libc, and
# carries the pause programs: the instance needs no compiler and no package for pausebake.
#
#   make dist
#   packer build packer/examples/amazon-ebs.pkr.hcl     # arm64: -var pausebake=dist/pausebake-linux-arm64

variable "pausebake" {
  type        = string
  default     = "dist/pausebake-linux-amd64"
  description = "Path of the static pausebake for the instance's architecture (make dist)."
}

variable "kubernetes_version" {
  type        = string
  default     = ""
  description = "Kubernetes version the node will run; empty: detect it in the image."
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region to build in."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the build instance."
}

source "amazon-ebs" "node" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin"
  ami_name      = "pausebake-node-{{timestamp}}"

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
  sources = ["source.amazon-ebs.node"]

  # The node's container runtime; a real pipeline installs its own here.
  provisioner "shell" {
    inline = [
      "sudo apt-get update",
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y containerd runc",
    ]
  }

  provisioner "file" {
    source      = var.pausebake
    destination = "/tmp/pausebake"
  }

  # containerd holds meta.db locked while it runs; pausebake refuses a locked store.
  provisioner "shell" {
    environment_vars = ["KUBERNETES_VERSION=${var.kubernetes_version}"]
    inline = [
      "set -eu",
      "sudo systemctl stop containerd",
      "sudo install -m 0755 /tmp/pausebake /usr/local/sbin/pausebake",
      "sudo pausebake bake --root / $${KUBERNETES_VERSION:+--kubernetes-version \"$KUBERNETES_VERSION\"}",
      "sudo pausebake verify --root /",
    ]
  }
}

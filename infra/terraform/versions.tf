terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

# Credentials come from the standard AWS chain of whoever runs terraform (environment, SSO profile, ...), never
# from these files.
provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "mujo-platform", ManagedBy = "terraform" }, var.tags)
  }
}

variable "region" {
  description = "AWS region of the bucket and the Ray cluster (cluster/aws.yaml provider.region)."
  type        = string
  default     = "us-west-2"
}

variable "bucket_name" {
  description = "Globally unique name of the data bucket (datasets, shards, runs). The storage root is s3://<bucket_name>/runs."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the IAM roles and instance profiles: <prefix>-head, <prefix>-node, <prefix>-irsa (cluster/aws.yaml and cluster/kuberay/*.yaml name mujo-ray-*)."
  type        = string
  default     = "mujo-ray"
}

variable "cluster_name" {
  description = "Ray cluster_name of cluster/aws.yaml: the head may only terminate/stop/tag EC2 instances tagged ray-cluster-name=<cluster_name>."
  type        = string
  default     = "mujo"
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for bucket encryption (SSE-KMS). null: SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be >= 1."
  }
}

variable "runs_prefix" {
  description = "Key prefix of the runs (the storage root s3://<bucket>/<runs_prefix>); a run's Ray Train checkpoints live under <runs_prefix>/<run_name>/train/."
  type        = string
  default     = "runs"
}

variable "checkpoint_run_names" {
  description = <<-EOT
    Runs whose Ray Train checkpoints (<runs_prefix>/<run>/train/) expire after checkpoint_expiration_days.
    S3 lifecycle filters match literal prefixes only (no wildcard such as runs/*/train/), so each run gets its own
    rule; add a run name here (and apply) when you start a long-lived run.
  EOT
  type        = list(string)
  default     = ["demo"]

  validation {
    condition     = alltrue([for r in var.checkpoint_run_names : can(regex("^[A-Za-z0-9_.-]+$", r))])
    error_message = "Run names are literal (letters, digits, _ . -): S3 lifecycle prefixes take no wildcards."
  }
}

variable "checkpoint_expiration_days" {
  description = "Days after which checkpoint objects under <runs_prefix>/<run>/train/ expire (become noncurrent versions)."
  type        = number
  default     = 14

  validation {
    condition     = var.checkpoint_expiration_days >= 1
    error_message = "checkpoint_expiration_days must be >= 1."
  }
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete a non-empty bucket (all data lost)."
  type        = bool
  default     = false
}

# KubeRay on EKS: IAM Roles for Service Accounts. Leave eks_oidc_provider_arn null to skip the IRSA role.
variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (arn:aws:iam::<ACCOUNT_ID>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID>). null: no IRSA role."
  type        = string
  default     = null
}

variable "eks_oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL (aws eks describe-cluster --query cluster.identity.oidc.issuer), with or without https://."
  type        = string
  default     = null
}

variable "k8s_namespace" {
  description = "Namespace of the Ray pods' service account (cluster/kuberay/*.yaml)."
  type        = string
  default     = "default"
}

variable "k8s_service_account" {
  description = "Name of the Ray pods' service account (cluster/kuberay/*.yaml)."
  type        = string
  default     = "mujo-ray"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

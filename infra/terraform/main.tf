# Cloud resources of the platform: the data bucket and the identities of the Ray nodes.
#
#   * S3 bucket: versioned, encrypted (SSE-S3 or SSE-KMS), no public access, TLS only, lifecycle rules.
#   * Ray on EC2 (cluster/aws.yaml): a node role (workers: the bucket only) and a head role (the bucket, plus what
#     the autoscaler needs to launch and terminate this cluster's workers), each with an instance profile.
#   * Ray on EKS (cluster/kuberay/*.yaml): an optional IRSA role (the bucket only) for the pods' service account.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition   = data.aws_partition.current.partition
  account_id  = data.aws_caller_identity.current.account_id
  bucket_arn  = aws_s3_bucket.data.arn
  use_kms     = var.kms_key_arn != null
  oidc_host   = var.eks_oidc_issuer_url == null ? null : trimprefix(var.eks_oidc_issuer_url, "https://")
  create_irsa = var.eks_oidc_provider_arn != null
}

# ---------------------------------------------------------------------------------------------------------------
# Data bucket
# ---------------------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced" # no ACLs: access is decided by IAM and the bucket policy alone
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.use_kms
  }
}

# Ray Train keeps num_to_keep checkpoints and deletes older ones; with versioning every deletion leaves a
# noncurrent version behind, so noncurrent versions must expire or checkpoint churn is kept forever.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  # Versioning must be on before rules on noncurrent versions are set.
  depends_on = [aws_s3_bucket_versioning.data]

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # Old checkpoints of named runs: <runs_prefix>/<run>/train/ (literal prefixes: S3 lifecycle has no wildcards).
  dynamic "rule" {
    for_each = toset(var.checkpoint_run_names)

    content {
      id     = "expire-checkpoints-${rule.value}"
      status = "Enabled"

      filter {
        prefix = "${var.runs_prefix}/${rule.value}/train/"
      }

      expiration {
        days = var.checkpoint_expiration_days
      }
    }
  }
}

data "aws_iam_policy_document" "bucket_policy" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket_policy.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# ---------------------------------------------------------------------------------------------------------------
# Least-privilege access to the bucket (every Ray process: workers, head, pods)
# ---------------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "bucket_access" {
  statement {
    sid = "ListTheBucket"
    actions = [
      "s3:ListBucket",
      "s3:GetBucketLocation",
      "s3:ListBucketMultipartUploads",
    ]
    resources = [local.bucket_arn]
  }

  statement {
    sid = "ReadWriteObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${local.bucket_arn}/*"]
  }

  dynamic "statement" {
    for_each = local.use_kms ? [var.kms_key_arn] : []

    content {
      sid       = "UseTheBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_policy" "bucket_access" {
  name        = "${var.name_prefix}-bucket-access"
  description = "Read/write the mujo data bucket ${var.bucket_name} and nothing else."
  policy      = data.aws_iam_policy_document.bucket_access.json
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------------------------------------------
# Ray on EC2: worker nodes (the bucket only)
# ---------------------------------------------------------------------------------------------------------------

resource "aws_iam_role" "node" {
  name               = "${var.name_prefix}-node"
  description        = "Ray worker nodes of cluster/aws.yaml: the data bucket only."
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "node_bucket" {
  role       = aws_iam_role.node.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name_prefix}-node"
  role = aws_iam_role.node.name
}

# ---------------------------------------------------------------------------------------------------------------
# Ray on EC2: the head node (the bucket, plus launching/terminating this cluster's workers)
# ---------------------------------------------------------------------------------------------------------------

resource "aws_iam_role" "head" {
  name               = "${var.name_prefix}-head"
  description        = "Ray head node of cluster/aws.yaml: the data bucket and the autoscaler's EC2 calls."
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "head_bucket" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

data "aws_iam_policy_document" "autoscaler" {
  # Describe* calls support no resource-level permissions: "*" is the only possible resource.
  statement {
    sid = "DescribeEc2"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeImages",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeAvailabilityZones",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "LaunchWorkersInTheRegion"
    actions   = ["ec2:RunInstances"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }

  # Tags: when launching (RunInstances with TagSpecifications) and on this cluster's own instances afterwards.
  statement {
    sid       = "TagAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  # Stop/Start only matter with provider.cache_stopped_nodes: true (cluster/aws.yaml sets false).
  statement {
    sid = "ManageThisClustersInstances"
    actions = [
      "ec2:CreateTags",
      "ec2:TerminateInstances",
      "ec2:StopInstances",
      "ec2:StartInstances",
    ]
    resources = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ray-cluster-name"
      values   = [var.cluster_name]
    }
  }

  # Workers are launched with the node instance profile, and with nothing else.
  statement {
    sid       = "PassOnlyTheNodeRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.node.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "head_autoscaler" {
  name   = "${var.name_prefix}-autoscaler"
  role   = aws_iam_role.head.id
  policy = data.aws_iam_policy_document.autoscaler.json
}

resource "aws_iam_instance_profile" "head" {
  name = "${var.name_prefix}-head"
  role = aws_iam_role.head.name
}

# ---------------------------------------------------------------------------------------------------------------
# Ray on EKS (KubeRay): IRSA role for the pods' service account (the bucket only)
# ---------------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "irsa_assume" {
  count = local.create_irsa ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  count = local.create_irsa ? 1 : 0

  name               = "${var.name_prefix}-irsa"
  description        = "KubeRay pods (service account ${var.k8s_namespace}/${var.k8s_service_account}): the data bucket only."
  assume_role_policy = data.aws_iam_policy_document.irsa_assume[0].json

  lifecycle {
    precondition {
      condition     = var.eks_oidc_issuer_url != null
      error_message = "eks_oidc_issuer_url is required with eks_oidc_provider_arn."
    }
  }
}

resource "aws_iam_role_policy_attachment" "irsa_bucket" {
  count = local.create_irsa ? 1 : 0

  role       = aws_iam_role.irsa[0].name
  policy_arn = aws_iam_policy.bucket_access.arn
}

output "bucket_name" {
  description = "The data bucket; the storage root is s3://<bucket_name>/runs."
  value       = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  description = "ARN of the data bucket."
  value       = aws_s3_bucket.data.arn
}

output "storage_root" {
  description = "storage.root for jobs on the cluster."
  value       = "s3://${aws_s3_bucket.data.bucket}/${var.runs_prefix}"
}

output "head_instance_profile_arn" {
  description = "cluster/aws.yaml: available_node_types.head.node_config.IamInstanceProfile.Arn"
  value       = aws_iam_instance_profile.head.arn
}

output "node_instance_profile_arn" {
  description = "cluster/aws.yaml: IamInstanceProfile.Arn of every worker node type"
  value       = aws_iam_instance_profile.node.arn
}

output "node_role_arn" {
  description = "The worker nodes' role (the only role the head may pass)."
  value       = aws_iam_role.node.arn
}

output "irsa_role_arn" {
  description = "cluster/kuberay/*.yaml: the service account's eks.amazonaws.com/role-arn annotation (null without IRSA)."
  value       = one(aws_iam_role.irsa[*].arn)
}

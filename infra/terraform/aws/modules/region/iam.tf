# IRSA roles: the archiver writes the archive; replay jobs (same service account kind) read it.
# The gateway keeps events under fallback/ of the same bucket while Kafka is down (GATEWAY_FALLBACK_URI).
# The app uses boto3's default credential chain, so S3 works with no keys in any setting.

locals {
  oidc_issuer = replace(aws_iam_openid_connect_provider.eks.url, "https://", "")
  # role name suffix -> the Kubernetes service account (namespace evpipe) that may assume it
  irsa_service_accounts = { archiver = "evpipe-archiver", gateway = "evpipe-gateway" }
}

# One role per process kind that talks to AWS, each assumable only by its own service account.
resource "aws_iam_role" "irsa" {
  for_each = local.irsa_service_accounts
  name     = "${local.prefix}-${each.key}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = aws_iam_openid_connect_provider.eks.arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.oidc_issuer}:sub" = "system:serviceaccount:evpipe:${each.value}"
          "${local.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
  tags = local.tags
}

# The archiver's role was a resource of its own before: keep it (and its ARN in the service account) on upgrade.
moved {
  from = aws_iam_role.archiver
  to   = aws_iam_role.irsa["archiver"]
}

resource "aws_iam_role_policy" "archiver" {
  name = "archive-read-write"
  role = aws_iam_role.irsa["archiver"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [aws_s3_bucket.archive.arn]
      },
      {
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
        Resource = ["${aws_s3_bucket.archive.arn}/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.data.arn]
      },
    ]
  })
}

# The fallback store only: write, list, drain (read, then delete once Kafka acknowledged) under fallback/.
resource "aws_iam_role_policy" "gateway" {
  name = "fallback-read-write-delete"
  role = aws_iam_role.irsa["gateway"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = [aws_s3_bucket.archive.arn]
        Condition = { StringLike = { "s3:prefix" = ["fallback/*"] } }
      },
      {
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
        Resource = ["${aws_s3_bucket.archive.arn}/fallback/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.data.arn]
      },
    ]
  })
}

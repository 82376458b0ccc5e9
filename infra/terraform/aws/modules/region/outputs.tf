# What a deployment needs, named after the app's own environment variables, so wiring is a
# copy: `app_settings` goes into the evpipe-config ConfigMap as is; the `*_secret_arn`
# outputs hold the values of the evpipe-secrets Secret (see docs/operations.md#secrets).

output "app_settings" {
  description = "Non-secret environment variables for every evpipe process in this region."
  value = merge(
    {
      GATEWAY_BACKEND         = local.uses_kafka ? "kafka" : (local.uses_redis ? "redis" : "postgres")
      GATEWAY_TRUSTED_PROXIES = join(",", aws_subnet.public[*].cidr_block)
    },
    local.uses_kafka ? {
      KAFKA_BOOTSTRAP_SERVERS  = aws_msk_cluster.this[0].bootstrap_brokers_sasl_scram
      KAFKA_SECURITY_PROTOCOL  = "SASL_SSL"
      KAFKA_SASL_MECHANISM     = "SCRAM-SHA-512"
      KAFKA_REPLICATION_FACTOR = "3"
      ARCHIVE_URI              = "s3://${aws_s3_bucket.archive.bucket}/events"
      CLICKHOUSE_DATABASE      = "evpipe"
    } : {},
  )
}

output "kafka_scram_secret_arn" {
  description = "Secrets Manager secret with {username, password} -> KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD."
  value       = local.uses_kafka ? aws_secretsmanager_secret.kafka_scram[0].arn : null
}

output "kafka_bootstrap_brokers_iam" {
  description = "Brokers for IAM auth (port 9098) - with KAFKA_SASL_MECHANISM=OAUTHBEARER and an MSK IAM token provider."
  value       = local.uses_kafka ? aws_msk_cluster.this[0].bootstrap_brokers_sasl_iam : null
}

output "postgres_endpoint" {
  description = "RDS host:port for DATABASE_URL=postgresql://evpipe:<password>@<endpoint>/evpipe?sslmode=verify-full."
  value       = local.uses_postgres ? aws_db_instance.postgres[0].endpoint : null
}

output "postgres_password_secret_arn" {
  description = "RDS-managed master password (Secrets Manager)."
  value       = local.uses_postgres ? aws_db_instance.postgres[0].master_user_secret[0].secret_arn : null
}

output "redis_endpoint" {
  description = "ElastiCache primary endpoint for REDIS_URL=rediss://:<auth token>@<endpoint>:6379/0 (REDIS_ADDRESS for KEDA)."
  value       = local.uses_redis ? aws_elasticache_replication_group.this[0].primary_endpoint_address : null
}

output "redis_auth_token" {
  description = "ElastiCache AUTH token (REDIS_PASSWORD)."
  value       = random_password.redis.result
  sensitive   = true
}

output "archive_bucket" {
  description = "Archive bucket name."
  value       = aws_s3_bucket.archive.bucket
}

output "archive_bucket_arn" {
  description = "Archive bucket ARN (replication source or destination)."
  value       = aws_s3_bucket.archive.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting this region's data at rest."
  value       = aws_kms_key.data.arn
}

output "archiver_role_arn" {
  description = "IRSA role for the evpipe-archiver service account (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.irsa["archiver"].arn
}

output "gateway_role_arn" {
  description = "IRSA role for the evpipe-gateway service account: the fallback store under fallback/."
  value       = aws_iam_role.irsa["gateway"].arn
}

output "gateway_target_group_arn" {
  description = "ALB target group for the gateway TargetGroupBinding."
  value       = aws_lb_target_group.gateway.arn
}

output "alb_dns_name" {
  description = "Point the public DNS record (Route 53 failover/latency record) here."
  value       = aws_lb.gateway.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the ALB, for Route 53 alias records."
  value       = aws_lb.gateway.zone_id
}

output "eks_cluster_name" {
  description = "EKS cluster to deploy infra/k8s overlays to."
  value       = aws_eks_cluster.this.name
}

output "ecr_repository_url" {
  description = "Where CI pushes the image (primary region)."
  value       = var.create_ecr_repository ? aws_ecr_repository.evpipe[0].repository_url : null
}

output "data_security_group_id" {
  description = "Attach a self-managed ClickHouse (EC2 in the data subnets) to this group: it admits 8443/9440 from the app tier only."
  value       = aws_security_group.data.id
}

output "data_subnet_ids" {
  description = "Private data subnets (ClickHouse servers or PrivateLink endpoints go here)."
  value       = aws_subnet.data[*].id
}

# Stage 3 buffer: MSK across the 3 data subnets, TLS everywhere, SASL/SCRAM (port 9096) and
# IAM (port 9098) client auth, KMS at rest. The app connects with
#   KAFKA_SECURITY_PROTOCOL=SASL_SSL, KAFKA_SASL_MECHANISM=SCRAM-SHA-512 and the SCRAM secret.

resource "aws_msk_configuration" "this" {
  count          = local.uses_kafka ? 1 : 0
  name           = "${local.prefix}-kafka"
  kafka_versions = ["3.6.0"]
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
    log.retention.hours=168
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  count                  = local.uses_kafka ? 1 : 0
  cluster_name           = "${local.prefix}-kafka"
  kafka_version          = "3.6.0"
  number_of_broker_nodes = 3
  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = aws_subnet.data[*].id
    security_groups = [aws_security_group.data.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }
  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }
  client_authentication {
    unauthenticated = false
    sasl {
      scram = true
      iam   = true
    }
  }
  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.data.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }
  tags = local.tags
}

resource "random_password" "kafka" {
  length  = 32
  special = false
}

# MSK only accepts SCRAM secrets named AmazonMSK_* and encrypted with a customer key.
resource "aws_secretsmanager_secret" "kafka_scram" {
  count      = local.uses_kafka ? 1 : 0
  name       = "AmazonMSK_${local.prefix}-evpipe"
  kms_key_id = aws_kms_key.data.arn
  tags       = local.tags
}

resource "aws_secretsmanager_secret_version" "kafka_scram" {
  count         = local.uses_kafka ? 1 : 0
  secret_id     = aws_secretsmanager_secret.kafka_scram[0].id
  secret_string = jsonencode({ username = "evpipe", password = random_password.kafka.result })
}

resource "aws_msk_scram_secret_association" "this" {
  count           = local.uses_kafka ? 1 : 0
  cluster_arn     = aws_msk_cluster.this[0].arn
  secret_arn_list = [aws_secretsmanager_secret.kafka_scram[0].arn]
  depends_on      = [aws_secretsmanager_secret_version.kafka_scram]
}

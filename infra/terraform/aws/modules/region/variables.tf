variable "name" {
  description = "Prefix for every resource name (one deployment per name and region)."
  type        = string
  default     = "evpipe"
}

variable "region" {
  description = "AWS region of this instance. A second region (DR) is one more module instance."
  type        = string
}

variable "role" {
  description = "primary or dr: the DR region receives the replicated archive and starts with smaller capacity."
  type        = string
  default     = "primary"
  validation {
    condition     = contains(["primary", "dr"], var.role)
    error_message = "role must be \"primary\" or \"dr\"."
  }
}

variable "vpc_cidr" {
  description = "VPC range. Subnets are carved with cidrsubnet(): public /24s at 0-2, app /20s at 1-3 (of /20s), data /24s at 64-66."
  type        = string
  default     = "10.0.0.0/16"
}

variable "stage" {
  description = "Pipeline stage: 1 (Postgres), 2 (Redis + workers + Postgres), 3 (MSK + S3 + ClickHouse)."
  type        = number
  default     = 3
  validation {
    condition     = contains([1, 2, 3], var.stage)
    error_message = "stage must be 1, 2 or 3."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the ALB's HTTPS listener."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS control-plane version."
  type        = string
  default     = "1.31"
}

variable "gateway_node_instance_types" {
  description = "API tier (CPU-bound: JSON parsing, TLS): compute-optimised instances."
  type        = list(string)
  default     = ["c6i.large"]
}

variable "consumer_node_instance_types" {
  description = "Workers and consumer groups (CPU and network): network-optimised instances."
  type        = list(string)
  default     = ["c6in.large"]
}

variable "gateway_nodes" {
  description = "Min, desired and max nodes of the API node group (the seeds: 5 -> 50)."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 3, desired = 5, max = 50 }
}

variable "consumer_nodes" {
  description = "Min, desired and max nodes of the consumer/worker node group."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 2, desired = 2, max = 20 }
}

variable "msk_instance_type" {
  description = "MSK broker size (stage 3)."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_volume_gb" {
  description = "EBS per MSK broker: Kafka keeps days of buffer on disk."
  type        = number
  default     = 1000
}

variable "redis_node_type" {
  description = "ElastiCache node (stage 2): RAM-bound, scale vertically."
  type        = string
  default     = "cache.r7g.large"
}

variable "postgres_instance_class" {
  description = "RDS instance (stages 1-2): disk-I/O-bound, scale vertically (class and IOPS)."
  type        = string
  default     = "db.m6g.xlarge"
}

variable "postgres_storage_gb" {
  description = "Initial RDS storage; autoscaling up to 4x."
  type        = number
  default     = 500
}

variable "archive_glacier_after_days" {
  description = "Archive objects move to Glacier Flexible Retrieval after this many days."
  type        = number
  default     = 90
}

variable "archive_expire_after_days" {
  description = "Archive objects are deleted after this many days (0 = keep forever)."
  type        = number
  default     = 0
}

variable "create_ecr_repository" {
  description = "Create the image repository here (the primary); the DR region receives ECR replication."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

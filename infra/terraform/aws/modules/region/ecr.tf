# The image repository CI pushes to: immutable tags, scanned on push, KMS-encrypted.

resource "aws_ecr_repository" "evpipe" {
  count                = var.create_ecr_repository ? 1 : 0
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.data.arn
  }
  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "evpipe" {
  count      = var.create_ecr_repository ? 1 : 0
  repository = aws_ecr_repository.evpipe[0].name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 100 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 100 }
      action       = { type = "expire" }
    }]
  })
}

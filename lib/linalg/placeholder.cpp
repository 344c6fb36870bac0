namespace oscar::linalg {}

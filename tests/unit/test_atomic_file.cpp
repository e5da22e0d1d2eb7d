// AtomicFile: a file appears whole or not at all; an interrupted write leaves the old content and
// no temporary; errors name the caller and the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "kvprime/core/atomic_file.h"
#include "kvprime/core/error.h"
#include "test_support.h"

using kvprime::AtomicFile;

TEST(AtomicFile, CommitReplacesTheFileAndLeavesNoTemporary) {
  kvprime::test::TempDir tmp;
  const std::string path = tmp.path() + "/out.txt";
  kvprime::write_file_atomically(path, "first", "test");
  kvprime::write_file_atomically(path, "second", "test");
  EXPECT_EQ(kvprime::test::read_file(path), "second");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(AtomicFile, WithoutCommitTheOldContentStaysAndTheTemporaryGoes) {
  kvprime::test::TempDir tmp;
  const std::string path = tmp.path() + "/out.txt";
  kvprime::write_file_atomically(path, "old", "test");
  {
    AtomicFile f(path, "test");
    f.write("new, never committed", 20);
    EXPECT_TRUE(std::filesystem::exists(path + ".tmp"));
  }  // e.g. an exception between write and commit
  EXPECT_EQ(kvprime::test::read_file(path), "old");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(AtomicFile, ErrorsNameTheCallerAndTheFile) {
  kvprime::test::TempDir tmp;
  try {
    kvprime::write_file_atomically(tmp.path() + "/missing/dir/out.txt", "x", "saving the report");
    FAIL() << "expected an error";
  } catch (const kvprime::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("saving the report"), std::string::npos) << m;
    EXPECT_NE(m.find("missing/dir/out.txt.tmp"), std::string::npos) << m;
    EXPECT_NE(m.find("cannot create"), std::string::npos) << m;
  }
  // The target is a directory: the rename fails, and the temporary is removed.
  std::filesystem::create_directory(tmp.path() + "/adir");
  EXPECT_THROW(kvprime::write_file_atomically(tmp.path() + "/adir", "x", "test"), kvprime::Error);
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/adir.tmp"));
}
